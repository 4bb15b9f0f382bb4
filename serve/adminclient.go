package serve

import "github.com/dockca/dockca/admin"

// ErrNoService means no service answers on the home's admin socket.
var ErrNoService = admin.ErrNoService

// AdminClient talks to a running service over its admin socket.
type AdminClient = admin.Client

// DialAdmin connects to the admin socket of home (see admin.Dial).
func DialAdmin(home string) (*AdminClient, error) { return admin.Dial(home) }
