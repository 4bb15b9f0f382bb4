// Package enroll is the client of `dockca serve` for machines that hold no
// CA database: it bootstraps trust in the CA from the root's SHA-256
// fingerprint, generates keys locally (they never leave the machine),
// enrolls with a one-time token, renews and revokes over mutual TLS, and
// keeps a certificate directory fresh (Watch).
//
// Remote `dockca context add --ca-url` and `dockca daemon setup --ca-url`
// are built on Bootstrap + Client.Enroll; `dockca renew` on Watch / Renew.
package enroll

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/caurl"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// ErrFingerprintMismatch means the CA presented a root other than the one
// the fingerprint names: refuse, someone may be in the middle.
var ErrFingerprintMismatch = errors.New("the CA's root certificate does not match the expected fingerprint")

// Client talks to one CA service, reached at one or more base URLs (its
// replicas, tried in turn as failover.go describes), trusting its pinned
// root (and, during a CA rotation's overlap, the other root of the bundle
// it holds).
type Client struct {
	// Holder, when set, tells the CA where the certificates this client
	// enrolls or renews go ("docker context prod on laptop-7"), for its
	// record (rotate status, show); see pki.HolderHere.
	Holder string

	urls  []string
	pref  *preference
	root  *x509.Certificate
	roots []*x509.Certificate
	pool  *x509.CertPool
	hc    *http.Client
}

const requestTimeout = 30 * time.Second

// New returns a client for the service at caURLs (see caurl.Check) that
// trusts root.
func New(caURLs []string, root *x509.Certificate) (*Client, error) {
	return NewWithRoots(caURLs, []*x509.Certificate{root})
}

// NewWithRoots returns a client for the service at caURLs that trusts
// every root of a ca.pem bundle; the first is the one Root reports.
func NewWithRoots(caURLs []string, roots []*x509.Certificate) (*Client, error) {
	if len(roots) == 0 {
		return nil, errors.New("no root to trust")
	}
	urls, err := caurl.Check(caURLs)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	c := &Client{urls: urls, pref: preferenceFor(urls), root: roots[0], roots: roots, pool: pool}
	c.hc = c.httpClient(nil)
	return c, nil
}

// URLs are the service's base URLs, in the order given.
func (c *Client) URLs() []string { return slices.Clone(c.urls) }

// URL is the service's base URLs as --ca-url takes them (comma-separated).
func (c *Client) URL() string { return caurl.Format(c.urls) }

// endpoint is path on the service; the failover transport decides which
// replica gets it.
func (c *Client) endpoint(path string) string { return c.urls[0] + path }

// HTTPClient is an HTTP client that sends requests built on any of the
// client's URLs to its replicas with failover, trusting only the pinned
// root and only the service's certificate (for the plugin's CRL fetches).
func (c *Client) HTTPClient() *http.Client { return c.httpClient(nil) }

// Roots are the trusted roots, Root first.
func (c *Client) Roots() []*x509.Certificate { return c.roots }

// RootsPEM is the trust bundle to write as ca.pem.
func (c *Client) RootsPEM() []byte { return pki.PEMChain(c.roots...) }

// Root is the trusted root.
func (c *Client) Root() *x509.Certificate { return c.root }

func (c *Client) httpClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.pool, VerifyConnection: isService}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: requestTimeout, Transport: &failover{urls: c.urls, pref: c.pref, next: newTransport(cfg)}}
}

// isService accepts only the service's own certificate profile: any daemon
// certificate of the same CA chains to the root too, and one issued for
// the service's host name must not be able to pose as the service and
// collect enrollment tokens.
func isService(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 || !slices.Contains(cs.PeerCertificates[0].Subject.OrganizationalUnit, pki.ServiceOU) {
		return ErrNotService
	}
	return nil
}

// FetchRoot downloads the service's root without trusting anything, for a
// user to compare its fingerprint, from the first of caURLs that answers.
// It also checks that the service's own certificate chains to that root,
// so the answer comes from a holder of the CA's certificate.
func FetchRoot(ctx context.Context, caURLs []string) (*x509.Certificate, error) {
	roots, err := FetchRoots(ctx, caURLs, "")
	if err != nil {
		return nil, err
	}
	return roots[0], nil
}

// FetchRoots downloads the service's trust bundle (GET /v1/roots: the
// current root, and during a CA rotation's overlap the old one) without
// trusting anything, from the first of caURLs that answers. The service's
// own certificate must chain to the root with SHA-256 fingerprint want
// (to the first root when want is empty), which is then first in the
// answer.
func FetchRoots(ctx context.Context, caURLs []string, want string) ([]*x509.Certificate, error) {
	urls, err := caurl.Check(caURLs)
	if err != nil {
		return nil, err
	}
	tr := &failover{urls: urls, pref: preferenceFor(urls), next: newTransport(&tls.Config{
		MinVersion: tls.VersionTLS12,
		// Trust comes from the fingerprint the caller checks next.
		InsecureSkipVerify: true,
		VerifyConnection:   isService,
	})}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: requestTimeout, Transport: tr}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, urls[0]+api.PathRoots, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch CA root: %w", unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch CA root: %s: %w", resp.Request.URL.Host, &api.StatusError{Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)})
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch CA root: %w", err)
	}
	blk, _ := pem.Decode(body)
	if blk == nil || blk.Type != pki.PEMTypeCertificate {
		return nil, errors.New("fetch CA root: the answer is not a PEM certificate")
	}
	roots, err := tlsbundle.Certs(body)
	if err != nil {
		return nil, fmt.Errorf("fetch CA root: %w", err)
	}
	if want != "" {
		i := slices.IndexFunc(roots, func(r *x509.Certificate) bool { return pki.Fingerprint(r) == want })
		if i < 0 {
			return nil, fmt.Errorf("%w: got %s, want %s", ErrFingerprintMismatch, pki.Fingerprint(roots[0]), want)
		}
		roots[0], roots[i] = roots[i], roots[0]
	}
	root := roots[0]
	state := resp.TLS
	if state == nil || len(state.PeerCertificates) == 0 {
		return nil, errors.New("fetch CA root: no server certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := state.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: resp.Request.URL.Hostname(), Roots: pool, Intermediates: inter}); err != nil {
		return nil, fmt.Errorf("fetch CA root: the service's certificate is not from the root it serves: %w", err)
	}
	return roots, nil
}

// unwrapURLError drops net/http's "Method URL:" prefix from a failover
// error: the URL there is only the one the request was built on, and the
// failover error names each URL tried.
func unwrapURLError(err error) error {
	var ue *url.Error
	var all *AllFailedError
	var one *attemptError
	if errors.As(err, &ue) && (errors.As(ue.Err, &all) || errors.As(ue.Err, &one)) {
		return ue.Err
	}
	return err
}

// Bootstrap fetches the root and returns a client trusting it, provided
// its SHA-256 fingerprint is fingerprint (hex, colons optional).
func Bootstrap(ctx context.Context, caURLs []string, fingerprint string) (*Client, error) {
	want := pki.NormalizeFingerprint(fingerprint)
	if len(want) != 64 {
		return nil, fmt.Errorf("fingerprint %q is not a SHA-256 (64 hex digits)", fingerprint)
	}
	roots, err := FetchRoots(ctx, caURLs, want)
	if err != nil {
		return nil, err
	}
	return NewWithRoots(caURLs, roots)
}

// Result is an issued certificate as written to disk.
type Result struct {
	Resp api.CertResponse
	Leaf *x509.Certificate
	// KeyPEM is the new private key, or nil when the key did not change.
	KeyPEM []byte
}

// Enroll generates a key of keyType (default ec-p256), makes a CSR with
// exactly the names the token is bound to, and exchanges it and the token
// for a certificate.
func (c *Client) Enroll(ctx context.Context, token string, keyType pki.KeyType) (*Result, error) {
	claims, err := pki.PeekToken(token)
	if err != nil {
		return nil, err
	}
	kind, err := pki.ParseKind(claims.Dockca.Kind)
	if err != nil {
		return nil, fmt.Errorf("this token does not enroll certificates: %w", err)
	}
	names := []string(nil)
	if kind == pki.KindDaemon {
		names = claims.SANs
	}
	key, csrPEM, err := newKeyAndCSR(keyType, claims.Subject, names)
	if err != nil {
		return nil, err
	}
	var resp api.CertResponse
	if err := api.DoHeader(oneShot(ctx), c.hc, http.MethodPost, c.endpoint(api.PathSign), c.holderHeader(), api.SignRequest{CSR: string(csrPEM), Token: token}, &resp); err != nil {
		return nil, fmt.Errorf("request a certificate: %w", tokenUsedHint(unwrapURLError(err)))
	}
	return c.result(resp, key, key.Public())
}

// Renew renews the certificate presented as cert over mutual TLS. With
// rekey a new key of keyType is generated and certified; otherwise the
// same key is.
func (c *Client) Renew(ctx context.Context, cert tls.Certificate, rekey bool, keyType pki.KeyType) (*Result, error) {
	leaf, err := leafOf(cert)
	if err != nil {
		return nil, err
	}
	var req api.RenewRequest
	var key crypto.Signer
	if rekey {
		var csrPEM []byte
		if key, csrPEM, err = newKeyAndCSR(keyType, leaf.Subject.CommonName, pki.SANStrings(leaf)); err != nil {
			return nil, err
		}
		req.CSR = string(csrPEM)
	}
	hc := c.httpClient(&cert)
	defer hc.CloseIdleConnections()
	var resp api.CertResponse
	if err := api.DoHeader(ctx, hc, http.MethodPost, c.endpoint(api.PathRenew), c.holderHeader(), req, &resp); err != nil {
		return nil, fmt.Errorf("request a renewal: %w", unwrapURLError(err))
	}
	want := leaf.PublicKey
	if key != nil {
		want = key.Public()
	}
	return c.result(resp, key, want)
}

func (c *Client) holderHeader() http.Header {
	if l := pki.HolderLabel(c.Holder); l != "" {
		return http.Header{api.HeaderHolder: {l}}
	}
	return nil
}

// Revoke revokes the certificate presented as cert (its holder's right).
func (c *Client) Revoke(ctx context.Context, cert tls.Certificate, reason string) (*api.RevokeResponse, error) {
	hc := c.httpClient(&cert)
	defer hc.CloseIdleConnections()
	var out api.RevokeResponse
	if err := api.Do(ctx, hc, http.MethodPost, c.endpoint(api.PathRevoke), api.RevokeRequest{Reason: reason}, &out); err != nil {
		return nil, fmt.Errorf("request a revocation: %w", unwrapURLError(err))
	}
	return &out, nil
}

// RevokeWithToken revokes the serial an admin revoke token names.
func (c *Client) RevokeWithToken(ctx context.Context, token, reason string) (*api.RevokeResponse, error) {
	var out api.RevokeResponse
	if err := api.Do(oneShot(ctx), c.hc, http.MethodPost, c.endpoint(api.PathRevoke), api.RevokeRequest{Token: token, Reason: reason}, &out); err != nil {
		return nil, fmt.Errorf("request a revocation: %w", tokenUsedHint(unwrapURLError(err)))
	}
	return &out, nil
}

// CRL fetches the current CRL (DER) and checks its signature against the
// intermediate that signs certificates (taken from the service's verified
// chain).
func (c *Client) CRL(ctx context.Context) (*x509.RevocationList, error) {
	crl, _, err := c.crlAndIssuer(ctx)
	return crl, err
}

// crlAndIssuer is CRL, also returning the certificate that signed it.
func (c *Client) crlAndIssuer(ctx context.Context) (*x509.RevocationList, *x509.Certificate, error) {
	der, err := get(ctx, c.hc, c.endpoint(api.PathCRL), 16<<20)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch CRL: %w", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch CRL: %w", err)
	}
	issuers, err := c.Issuers(ctx)
	if err != nil {
		return nil, nil, err
	}
	// From the root down: during a CA rotation the intermediate and its
	// cross-signed twin both verify the CRL, and the twin is the one that
	// chains directly to the root this client trusts (the offline cache
	// verifies it so).
	for i := len(issuers) - 1; i >= 0; i-- {
		if crl.CheckSignatureFrom(issuers[i]) == nil {
			return crl, issuers[i], nil
		}
	}
	return nil, nil, errors.New("fetch CRL: its signature is not the CA's")
}

// get fetches url, reading at most limit bytes of a 200 answer.
func get(ctx context.Context, hc *http.Client, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, unwrapURLError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &api.StatusError{Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	}
	return io.ReadAll(io.LimitReader(resp.Body, limit))
}

func (c *Client) result(resp api.CertResponse, key crypto.Signer, want crypto.PublicKey) (*Result, error) {
	blk, _ := pem.Decode([]byte(resp.Cert))
	if blk == nil {
		return nil, errors.New("the CA answered without a certificate")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	// Never write what the trusted root does not vouch for.
	inter := x509.NewCertPool()
	inter.AppendCertsFromPEM([]byte(resp.Chain))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("issued certificate does not chain to the trusted root: %w", err)
	}
	// The certificate must be for the key this machine holds, or the pair
	// written to disk would not work.
	if eq, ok := want.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(leaf.PublicKey) {
		return nil, errors.New("the CA issued a certificate for a different key; nothing written")
	}
	res := &Result{Resp: resp, Leaf: leaf}
	if key != nil {
		if res.KeyPEM, err = pki.MarshalPrivateKey(key); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func newKeyAndCSR(kt pki.KeyType, cn string, names []string) (crypto.Signer, []byte, error) {
	if kt == "" {
		kt = pki.KeyECP256
	}
	key, err := pki.GenerateKey(kt)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, n := range names {
		san, err := pki.ParseSAN(n)
		if err != nil {
			return nil, nil, err
		}
		if san.IP != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, san.IP)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, san.DNS)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func leafOf(cert tls.Certificate) (*x509.Certificate, error) {
	if cert.Leaf != nil {
		return cert.Leaf, nil
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	return x509.ParseCertificate(cert.Certificate[0])
}

// Issuers returns the intermediate certificates between the service's own
// certificate and the pinned root, as verified in a TLS handshake: the
// certificates that sign leaves and CRLs.
func (c *Client) Issuers(ctx context.Context) ([]*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint(api.PathHealthz), nil)
	if err != nil {
		return nil, err
	}
	hc := c.httpClient(nil)
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch CA chain: %w", unwrapURLError(err))
	}
	resp.Body.Close()
	if resp.TLS == nil || len(resp.TLS.VerifiedChains) == 0 || len(resp.TLS.VerifiedChains[0]) < 3 {
		return nil, errors.New("fetch CA chain: the service's chain has no intermediate")
	}
	chain := resp.TLS.VerifiedChains[0]
	return chain[1 : len(chain)-1], nil
}

// Policy fetches the CA's stored authorization policy (GET /v1/policy, the
// YAML `dockca policy set` stored); nil without an error when none is
// stored and the built-in roles apply.
func (c *Client) Policy(ctx context.Context) ([]byte, error) {
	yaml, err := get(ctx, c.hc, c.endpoint(api.PathPolicy), 4<<20)
	if api.IsStatus(err, http.StatusNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetch the CA's policy: %w", err)
	}
	return yaml, nil
}

// tokenUsedHint says plainly what a "token already used" answer means
// when replicas are involved: an earlier attempt, whose answer was lost,
// may have used it, and only a new token helps.
func tokenUsedHint(err error) error {
	var se *api.StatusError
	if errors.As(err, &se) && se.Status == http.StatusUnauthorized && se.Message == api.MsgTokenUsed {
		return fmt.Errorf("%w: a token works once, at any replica of the CA; if an earlier attempt failed without an answer, "+
			"that replica may have used it and its certificate was lost: mint a new token", err)
	}
	return err
}
