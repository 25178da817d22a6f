package projections

import (
	"errors"

	"github.com/jetmedia/jetmedia/events"
)

func errorsIsUnknown(err error) bool { return errors.Is(err, events.ErrUnknownType) }
