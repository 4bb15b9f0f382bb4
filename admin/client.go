package admin

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// ErrNoService means no service answers on the home's admin socket.
var ErrNoService = errors.New("dockca serve is not running for this home")

// Client performs the admin operations through a running service's admin
// socket (<home>/serve.sock).
type Client struct {
	hc *http.Client
	// Actor is recorded as the issuer of what this client issues.
	Actor string
}

var _ Admin = (*Client)(nil)

// Dial connects to the admin socket of home; ErrNoService when there is
// none or nobody answers (a stale socket of a crashed service refuses at
// once, so this never waits).
func Dial(home string) (*Client, error) {
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
		DisableCompression:  true,
		MaxIdleConnsPerHost: 4,
	}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 10 * time.Minute}}, nil
}

// The host part is ignored: every request goes to the socket.
const base = "http://dockca-serve"

// RemoteError is an error the service reported. It matches the sentinel
// of its kind (pki.ErrPolicy for a refusal, store.ErrNotFound, …) so
// callers branch the same way as on a local error.
type RemoteError struct {
	Status  int
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// Unwrap maps the status back to the sentinel errors callers test.
func (e *RemoteError) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest:
		return pki.ErrPolicy
	case http.StatusNotFound:
		return store.ErrNotFound
	case http.StatusUnprocessableEntity:
		return ErrInvalidPolicy
	}
	return nil
}

func remote(err error) error {
	var se *api.StatusError
	if errors.As(err, &se) {
		return &RemoteError{Status: se.Status, Message: se.Message}
	}
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return remote(api.DoLimit(ctx, c.hc, method, base+path, in, out, api.MaxAdminBodyBytes))
}

// get streams a non-JSON response into w.
func (c *Client) get(ctx context.Context, path string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, remote(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return 0, &RemoteError{Status: resp.StatusCode, Message: e.Error}
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("admin socket: %w", err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("admin socket: the service sent %d of %d bytes", n, resp.ContentLength)
	}
	return n, nil
}

// Root implements Admin.
func (c *Client) Root(ctx context.Context) (*x509.Certificate, error) {
	roots, err := c.Roots(ctx)
	if err != nil {
		return nil, err
	}
	return roots[0], nil
}

// Roots implements Admin: the service answers the root endpoint with the
// whole trust bundle, current root first.
func (c *Client) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	var buf bytes.Buffer
	if _, err := c.get(ctx, api.PathAdminRoot, &buf); err != nil {
		return nil, err
	}
	certs, err := tlsbundle.Certs(buf.Bytes())
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("admin socket: the service sent no root certificate")
	}
	return certs, nil
}

func (c *Client) issueRequest(r ca.Request) api.AdminIssueRequest {
	return api.AdminIssueRequest{Kind: string(r.Kind), Name: r.Name, Role: r.Role, SANs: r.SANs, Groups: r.Groups,
		TTLSeconds: int64(r.TTL / time.Second), By: c.Actor, RenewedFrom: r.RenewedFrom, Holder: r.Holder}
}

// CheckRequest implements Admin.
func (c *Client) CheckRequest(ctx context.Context, r ca.Request) (*ca.Normalized, error) {
	req := c.issueRequest(r)
	req.DryRun = true
	if r.CSR != nil {
		req.CSR = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: r.CSR.Raw}))
	}
	var out api.AdminIssueCheck
	if err := c.do(ctx, http.MethodPost, api.PathAdminIssue, req, &out); err != nil {
		return nil, err
	}
	n := &ca.Normalized{Kind: pki.Kind(out.Kind), Name: out.Name, Role: out.Role, Groups: out.Groups, NotBefore: out.NotBefore, NotAfter: out.NotAfter}
	for _, s := range out.SANs {
		san, err := pki.ParseSAN(s)
		if err != nil {
			return nil, err
		}
		n.SANs = append(n.SANs, san)
	}
	return n, nil
}

// Issue implements Admin: without a CSR, the key is generated here and the
// service signs a CSR for it, so the key never leaves this process.
func (c *Client) Issue(ctx context.Context, r ca.Request) (*ca.Issued, error) {
	csr, key := r.CSR, crypto.Signer(nil)
	if csr == nil {
		n, err := ca.PrecheckRequest(r)
		if err != nil {
			return nil, err
		}
		kt := r.KeyType
		if kt == "" {
			kt = pki.KeyECP256
		}
		if key, err = pki.GenerateKey(kt); err != nil {
			return nil, err
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: n.Name}}, key)
		if err != nil {
			return nil, fmt.Errorf("create request: %w", err)
		}
		if csr, err = x509.ParseCertificateRequest(der); err != nil {
			return nil, err
		}
	}
	req := c.issueRequest(r)
	req.CSR = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw}))
	var out api.CertResponse
	if err := c.do(ctx, http.MethodPost, api.PathAdminIssue, req, &out); err != nil {
		return nil, err
	}
	chain, err := tlsbundle.Certs([]byte(out.Chain))
	if err != nil || len(chain) == 0 {
		return nil, errors.New("admin socket: the service sent no certificate chain")
	}
	roots, err := tlsbundle.Certs([]byte(out.CA))
	if err != nil {
		return nil, errors.New("admin socket: the service sent no root certificate")
	}
	leaf := chain[0]
	rec := &store.Certificate{Serial: out.Serial, Name: out.Name, Kind: pki.Kind(out.Kind), Role: out.Role, SANs: out.SANs, Groups: out.Groups,
		NotBefore: leaf.NotBefore.UTC(), NotAfter: out.NotAfter, Fingerprint: pki.Fingerprint(leaf), DER: leaf.Raw}
	return &ca.Issued{Record: rec, Leaf: leaf, Chain: chain, Root: roots[0], Roots: roots, Key: key}, nil
}

// Certificates implements Admin.
func (c *Client) Certificates(ctx context.Context, q api.AdminCertificatesRequest) ([]ca.ListEntry, error) {
	var out []ca.ListEntry
	if err := c.do(ctx, http.MethodPost, api.PathAdminCerts, q, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Revoke implements Admin.
func (c *Client) Revoke(ctx context.Context, targets []string, reason pki.Reason) ([]api.RevokeResponse, error) {
	var out api.AdminRevokeResponse
	if err := c.do(ctx, http.MethodPost, api.PathAdminRevoke, api.AdminRevokeRequest{Targets: targets, Reason: reason.Name}, &out); err != nil {
		return nil, err
	}
	return out.Results, nil
}

// CRL implements Admin.
func (c *Client) CRL(ctx context.Context) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := c.get(ctx, api.PathAdminCRL, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Backup implements Admin: the service streams a copy made in one read
// transaction; a short stream is an error.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return c.get(ctx, api.PathAdminBackup, w)
}

// CreateTokens implements Admin.
func (c *Client) CreateTokens(ctx context.Context, reqs []api.TokenRequest) ([]api.TokenResponse, error) {
	var out api.AdminTokensResponse
	if err := c.do(ctx, http.MethodPost, api.PathAdminTokenSets, api.AdminTokensRequest{Requests: reqs}, &out); err != nil {
		return nil, err
	}
	if len(out.Tokens) != len(reqs) {
		return nil, fmt.Errorf("admin socket: asked for %d tokens, got %d", len(reqs), len(out.Tokens))
	}
	return out.Tokens, nil
}

// CreateToken mints one token.
func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (*api.TokenResponse, error) {
	out, err := c.CreateTokens(ctx, []api.TokenRequest{req})
	if err != nil {
		return nil, err
	}
	return &out[0], nil
}

// Tokens implements Admin.
func (c *Client) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	var out []api.TokenInfo
	if err := c.do(ctx, http.MethodGet, api.PathAdminTokens, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Check implements Admin.
func (c *Client) Check(ctx context.Context) (*ca.CheckReport, error) {
	var out ca.CheckReport
	if err := c.do(ctx, http.MethodGet, api.PathAdminCheck, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotationStatus implements Admin.
func (c *Client) RotationStatus(ctx context.Context) (*ca.RotationStatus, error) {
	var out ca.RotationStatus
	if err := c.do(ctx, http.MethodGet, api.PathAdminRotation, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Rotate implements Admin.
func (c *Client) Rotate(ctx context.Context, r api.AdminRotateRequest) (*api.AdminRotateResponse, error) {
	var out api.AdminRotateResponse
	if err := c.do(ctx, http.MethodPost, api.PathAdminRotate, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Policy implements Admin.
func (c *Client) Policy(ctx context.Context) (*store.Policy, error) {
	var out store.Policy
	if err := c.do(ctx, http.MethodGet, api.PathAdminPolicy, nil, &out); err != nil {
		var re *RemoteError
		if errors.As(err, &re) && re.Status == http.StatusNotFound {
			return nil, store.ErrNoPolicy
		}
		return nil, err
	}
	return &out, nil
}

// SetPolicy implements Admin.
func (c *Client) SetPolicy(ctx context.Context, yaml []byte, by string) (*store.Policy, error) {
	var out store.Policy
	if err := c.do(ctx, http.MethodPut, api.PathAdminPolicy, api.AdminPolicyRequest{YAML: string(yaml), By: by}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Close implements Admin.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}
