package serve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dockca/dockca/internal/api"
)

// ErrNoService means no service answers on the home's admin socket.
var ErrNoService = errors.New("dockca serve is not running for this home")

// AdminClient talks to a running service over its admin socket.
type AdminClient struct {
	hc *http.Client
}

// DialAdmin connects to the admin socket of home; ErrNoService when there
// is none or nobody answers.
func DialAdmin(home string) (*AdminClient, error) {
	path := filepath.Join(home, api.SocketName)
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket {
		return nil, ErrNoService
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w (%s: %v)", ErrNoService, path, err)
	}
	c.Close()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &AdminClient{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// The host part is ignored: every request goes to the socket.
const adminBase = "http://dockca-serve"

// CreateToken mints a token.
func (c *AdminClient) CreateToken(ctx context.Context, req api.TokenRequest) (*api.TokenResponse, error) {
	var out api.TokenResponse
	if err := api.Do(ctx, c.hc, http.MethodPost, adminBase+api.PathAdminTokens, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Tokens lists the recorded tokens.
func (c *AdminClient) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	var out []api.TokenInfo
	if err := api.Do(ctx, c.hc, http.MethodGet, adminBase+api.PathAdminTokens, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Revoke revokes by serial or name.
func (c *AdminClient) Revoke(ctx context.Context, req api.AdminRevokeRequest) (*api.AdminRevokeResponse, error) {
	var out api.AdminRevokeResponse
	if err := api.Do(ctx, c.hc, http.MethodPost, adminBase+api.PathAdminRevoke, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Certificates lists certificates (see api.AdminCertificatesRequest) into
// out, a pointer to a slice of the CLI's list entries.
func (c *AdminClient) Certificates(ctx context.Context, req api.AdminCertificatesRequest, out any) error {
	return api.Do(ctx, c.hc, http.MethodPost, adminBase+api.PathAdminCerts, req, out)
}

// Close releases idle connections.
func (c *AdminClient) Close() { c.hc.CloseIdleConnections() }
