package rtmp

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jetmedia/jetmedia/events"
)

// App is the RTMP application publishers address: rtmp://HOST:PORT/live/<room>.
const App = "live"

// ErrStreamURL: the publish URL does not name a room and a token the way README "RTMP" says.
var ErrStreamURL = errors.New("rtmp: bad stream URL")

// ParseStreamURL finds the room and the access token in a publish URL (the connect command's
// tcUrl joined with the publish command's stream key). Both forms are accepted:
//
//	rtmp://HOST/live/<room>?token=<token>   (OBS: server rtmp://HOST/live, key <room>?token=<token>)
//	rtmp://HOST/live/<room>/<token>         (OBS: server rtmp://HOST/live/<room>, key <token>)
//
// A URL that carries two different tokens is refused rather than guessed at.
func ParseStreamURL(u *url.URL) (room, token string, err error) {
	if u == nil {
		return "", "", fmt.Errorf("%w: none", ErrStreamURL)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != App {
		return "", "", fmt.Errorf("%w: path %q is not /%s/<room> or /%s/<room>/<token>", ErrStreamURL, u.Path, App, App)
	}
	room = parts[1]
	if !events.ValidID(room) {
		return "", "", fmt.Errorf("%w: room %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", ErrStreamURL, room)
	}
	token = u.Query().Get("token")
	if len(parts) == 3 {
		if token != "" && token != parts[2] {
			return "", "", fmt.Errorf("%w: two different tokens (stream key and ?token=)", ErrStreamURL)
		}
		token = parts[2]
	}
	if token == "" {
		return "", "", fmt.Errorf("%w: no token (use <room>?token=<token> or the token as stream key)", ErrStreamURL)
	}
	return room, token, nil
}
