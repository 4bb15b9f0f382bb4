//go:build !linux

package serve

import (
	"errors"
	"net"
)

// peerUID fails closed where dockca cannot read peer credentials.
func peerUID(*net.UnixConn) (int, error) {
	return -1, errors.New("peer credentials are only checked on Linux")
}
