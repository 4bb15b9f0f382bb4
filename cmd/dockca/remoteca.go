package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/contexts"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/caurl"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// remoteCA adapts a dockca CA service (dockca serve) to the interfaces of
// the contexts and daemonsetup packages, for machines without a CA
// database: the key is generated here, a CSR and a one-time token go to the
// service, and only the certificate comes back. Trust in the service is
// bootstrapped on first use (by --fingerprint, or confirmed on a
// terminal), after the packages have checked their own input.
type remoteCA struct {
	e           *env
	caURLs      []string
	fingerprint string
	token       string
	claims      *pki.TokenClaims
	client      *enroll.Client
	// holder tells the CA where the certificate goes (pki.HolderHere).
	holder string
}

// newRemoteCA checks the token's shape and kind before anything is sent.
func newRemoteCA(e *env, caURLs []string, fingerprint, token string, kind pki.Kind) (*remoteCA, error) {
	claims, err := pki.PeekToken(token)
	if err != nil {
		return nil, err
	}
	if claims.Dockca.Kind != string(kind) {
		return nil, fmt.Errorf("the token is for a %s certificate, not a %s certificate", claims.Dockca.Kind, kind)
	}
	return &remoteCA{e: e, caURLs: caURLs, fingerprint: fingerprint, token: token, claims: claims}, nil
}

// remoteFlags are the flags that switch a command from the local CA to a
// dockca service: --ca-url, --token (or DOCKCA_TOKEN) and --fingerprint.
func remoteFlags(mint string) []cli.Flag {
	return []cli.Flag{
		caURLFlag("get the certificate from the dockca service at `URL` (comma-separated replicas, tried in turn; needs --token); no CA database here"),
		tokenFlag("one-time enrollment `TOKEN` from '" + mint + "'"),
		fingerprintFlag("the service's root `SHA256` fingerprint (without it, asked on a terminal)"),
	}
}

// The one definition of --ca-url, --token and --fingerprint and of the
// environment variables every command that takes them reads.
func caURLFlag(usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: "ca-url", EnvVars: []string{"DOCKCA_CA_URL"}, Usage: usage}
}

// caURLs parses --ca-url: one or more service URLs, comma-separated (the
// replicas of one CA); nil when it is not given. One bad, empty or
// repeated entry is a usage error quoting it.
func caURLs(c *cli.Context) ([]string, error) {
	v := c.String("ca-url")
	if v == "" && !c.IsSet("ca-url") {
		return nil, nil
	}
	urls, err := caurl.Parse(v)
	if err != nil {
		return nil, usagef("--ca-url: %v", err)
	}
	return urls, nil
}

func tokenFlag(usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: "token", EnvVars: []string{"DOCKCA_TOKEN"}, Usage: usage}
}

func fingerprintFlag(usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: "fingerprint", EnvVars: []string{"DOCKCA_FINGERPRINT"}, Usage: usage}
}

// remoteFromFlags returns the service named by remoteFlags, or nil when
// neither --ca-url nor --token was given (the local CA is meant).
func remoteFromFlags(c *cli.Context, e *env, kind pki.Kind) (*remoteCA, error) {
	if !c.IsSet("ca-url") && !c.IsSet("token") {
		return nil, nil
	}
	if !c.IsSet("ca-url") || !c.IsSet("token") {
		return nil, usagef("--ca-url and --token go together")
	}
	urls, err := caURLs(c)
	if err != nil {
		return nil, err
	}
	return newRemoteCA(e, urls, c.String("fingerprint"), c.String("token"), kind)
}

func (r *remoteCA) connect(ctx context.Context) (*enroll.Client, error) {
	if r.client == nil {
		c, err := trustCA(ctx, r.e, r.caURLs, r.fingerprint)
		if err != nil {
			return nil, err
		}
		c.Holder = r.holder
		r.client = c
	}
	return r.client, nil
}

func (r *remoteCA) enroll(ctx context.Context) (*enroll.Result, error) {
	c, err := r.connect(ctx)
	if err != nil {
		return nil, err
	}
	return c.Enroll(ctx, r.token, "")
}

func bundleOf(res *enroll.Result) tlsbundle.Bundle {
	return tlsbundle.Bundle{CA: []byte(res.Resp.CA), Cert: []byte(res.Resp.Chain), Key: res.KeyPEM, Serial: res.Resp.Serial, NotAfter: res.Leaf.NotAfter}
}

// IssueClient implements contexts.Issuer. The token decides the client
// name, role and lifetime; the caller has already checked they agree with
// what was asked for.
func (r *remoteCA) IssueClient(ctx context.Context, client string, role pki.Role, _ time.Duration) (*contexts.Material, error) {
	if client != r.claims.Subject || (role != "" && role != r.claims.Dockca.Role) {
		return nil, fmt.Errorf("the token is for client %q role %q, not %q role %q", r.claims.Subject, r.claims.Dockca.Role, client, role)
	}
	res, err := r.enroll(ctx)
	if err != nil {
		return nil, err
	}
	return &contexts.Material{Bundle: bundleOf(res), Client: res.Resp.Name, Role: res.Resp.Role}, nil
}

// CACertificate implements daemonsetup.Issuer.
func (r *remoteCA) CACertificate(ctx context.Context) ([]byte, error) {
	c, err := r.connect(ctx)
	if err != nil {
		return nil, err
	}
	return c.RootsPEM(), nil
}

// IssueDaemon implements daemonsetup.Issuer; the certificate must name
// exactly what setup asked for, or nothing is installed.
func (r *remoteCA) IssueDaemon(ctx context.Context, host string, sans []string, _ time.Duration) (*tlsbundle.Bundle, error) {
	res, err := r.enroll(ctx)
	if err != nil {
		return nil, err
	}
	if res.Resp.Name != host {
		return nil, fmt.Errorf("the service issued a certificate for %q, not %q (serial %s)", res.Resp.Name, host, res.Resp.Serial)
	}
	for _, s := range sans {
		if !pki.Covers(res.Leaf, s) {
			return nil, fmt.Errorf("the service's certificate %s does not cover %q: mint the token with --san %s", res.Resp.Serial, s, s)
		}
	}
	b := bundleOf(res)
	return &b, nil
}

// Record implements daemonsetup.Recorder: the service and its root, kept
// beside the daemon certificate for 'dockca renew --cert-dir'.
func (r *remoteCA) Record(host string) (string, []byte, error) {
	if r.client == nil {
		return "", nil, errors.New("not connected to the service")
	}
	data, err := r.client.MetaFile(string(pki.KindDaemon), host)
	return enroll.FileMeta, data, err
}

// VerifyHost implements contexts.HostVerifier: before the token is spent,
// the daemon must answer TLS with a certificate of this CA for its name.
func (r *remoteCA) VerifyHost(ctx context.Context, host string) error {
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	if err := enroll.VerifyDaemon(ctx, strings.TrimPrefix(host, "tcp://"), c.Root()); err != nil {
		return fmt.Errorf("%s: %w; the token was not used", host, err)
	}
	return nil
}

// serviceRenewer renews contexts: those enrolled from a CA service there,
// trusting the root the context already holds (and consulting its CRL
// first), the others at the local CA.
type serviceRenewer struct {
	*localCA
	crl *enroll.CRLCache
}

// RevokedAtService implements contexts.ServiceStatusChecker.
func (s serviceRenewer) RevokedAtService(ctx context.Context, caURLs []string, rootPEM []byte, serial string) (bool, error) {
	return revokedAtService(ctx, s.crl, caURLs, rootPEM, serial)
}

// RevokeSuperseded implements contexts.SupersededRevoker: at the service,
// the holder of the old certificate revokes it over mutual TLS.
func (s serviceRenewer) RevokeSuperseded(ctx context.Context, caURLs []string, old tlsbundle.Bundle) error {
	if len(caURLs) == 0 {
		return s.localCA.RevokeSuperseded(ctx, caURLs, old)
	}
	c, pair, err := serviceClientFor(caURLs, old)
	if err != nil {
		return err
	}
	_, err = c.Revoke(ctx, pair, "superseded")
	return err
}

func serviceClientFor(caURLs []string, b tlsbundle.Bundle) (*enroll.Client, tls.Certificate, error) {
	roots, err := tlsbundle.Certs(b.CA)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("read the context's root: %w", err)
	}
	c, err := enroll.NewWithRoots(caURLs, roots)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		return nil, tls.Certificate{}, errors.New("the context's certificate and key do not form a pair")
	}
	return c, pair, nil
}

func revokedAtService(ctx context.Context, cache *enroll.CRLCache, caURLs []string, rootPEM []byte, serial string) (bool, error) {
	root, err := tlsbundle.Leaf(rootPEM)
	if err != nil {
		return false, err
	}
	n, err := pki.ParseSerial(serial)
	if err != nil {
		return false, err
	}
	return cache.Revoked(ctx, caURLs, root, n)
}

// contextStatus answers contexts.List: revocation from the local CA's
// database for contexts it issued (local may be nil: none here), and from
// the service's CRL for contexts enrolled from a service.
type contextStatus struct {
	local contexts.StatusChecker
	crl   *enroll.CRLCache
}

func (s contextStatus) Revoked(ctx context.Context, serial string) (bool, error) {
	if s.local == nil {
		return false, nil
	}
	return s.local.Revoked(ctx, serial)
}

func (s contextStatus) RevokedAtService(ctx context.Context, caURLs []string, rootPEM []byte, serial string) (bool, error) {
	return revokedAtService(ctx, s.crl, caURLs, rootPEM, serial)
}

// RenewRemote implements contexts.RemoteRenewer.
func (serviceRenewer) RenewRemote(ctx context.Context, caURLs []string, current tlsbundle.Bundle) (*contexts.Material, error) {
	c, pair, err := serviceClientFor(caURLs, current)
	if err != nil {
		return nil, err
	}
	res, err := c.Renew(ctx, pair, true, "")
	if err != nil {
		return nil, err
	}
	return &contexts.Material{Bundle: bundleOf(res), Client: res.Resp.Name, Role: res.Resp.Role}, nil
}

func required(f *cli.StringFlag) *cli.StringFlag {
	f.Required = true
	return f
}
