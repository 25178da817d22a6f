package schemas

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// SignalBaseURL is the $id prefix of the signalling protocol's schema files.
const SignalBaseURL = "https://jetmedia.dev/schemas/signal/"

// Directions of signalling messages: the file name's prefix.
const (
	FromClient = "client"
	FromServer = "server"
)

//go:embed signal/*.json
var signalFiles embed.FS

// SignalValidator checks the room SDK's WebSocket messages (protocol version 1) against
// schemas/signal/<direction>.<type>.json. Immutable after NewSignal; safe for concurrent use.
type SignalValidator struct {
	byName map[string]*jsonschema.Schema // "<direction>.<type>"
}

// NewSignal compiles the signalling schemas.
func NewSignal() (*SignalValidator, error) {
	sub, err := fs.Sub(signalFiles, "signal")
	if err != nil {
		return nil, fmt.Errorf("schemas: %w", err)
	}
	names, err := fs.Glob(sub, "*.json")
	if err != nil {
		return nil, fmt.Errorf("schemas: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	for _, name := range names {
		b, err := fs.ReadFile(sub, name)
		if err != nil {
			return nil, fmt.Errorf("schemas: %w", err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schemas: signal/%s: %w", name, err)
		}
		obj, _ := doc.(map[string]any)
		if id, _ := obj["$id"].(string); id != SignalBaseURL+name {
			return nil, fmt.Errorf("schemas: signal/%s: $id is %q, want %q", name, id, SignalBaseURL+name)
		}
		if err := c.AddResource(SignalBaseURL+name, doc); err != nil {
			return nil, fmt.Errorf("schemas: signal/%s: %w", name, err)
		}
	}
	v := &SignalValidator{byName: map[string]*jsonschema.Schema{}}
	for _, name := range names {
		if name == "defs.json" {
			continue
		}
		sch, err := c.Compile(SignalBaseURL + name)
		if err != nil {
			return nil, fmt.Errorf("schemas: compile signal/%s: %w", name, err)
		}
		v.byName[strings.TrimSuffix(name, ".json")] = sch
	}
	return v, nil
}

// Validate checks one message sent in direction (FromClient or FromServer). The error wraps
// ErrNoSchema for a message type with no schema, ErrInvalid otherwise.
func (v *SignalValidator) Validate(direction string, raw []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("%w: not JSON: %v", ErrInvalid, err)
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: not a JSON object", ErrInvalid)
	}
	typ, _ := obj["type"].(string)
	sch, ok := v.byName[direction+"."+typ]
	if !ok {
		return fmt.Errorf("%w: %s message %q", ErrNoSchema, direction, typ)
	}
	if err := sch.Validate(doc); err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrInvalid, direction, typ, err)
	}
	return nil
}

// Messages lists "<direction>.<type>" for every message with a schema, sorted.
func (v *SignalValidator) Messages() []string { return slices.Sorted(maps.Keys(v.byName)) }
