package enroll

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// Errors of VerifyDaemon, for callers that branch on the reason.
var (
	ErrDaemonUnreachable = errors.New("the daemon does not accept connections")
	ErrDaemonNoTLS       = errors.New("the daemon does not speak TLS")
	ErrDaemonForeign     = errors.New("the daemon's certificate is not from this CA")
	ErrDaemonWrongName   = errors.New("the daemon's certificate does not cover the host name")
)

// DefaultDaemonCheckTimeout bounds VerifyDaemon.
const DefaultDaemonCheckTimeout = 5 * time.Second

// VerifyDaemon connects to a Docker daemon at addr (host:port) with TLS and
// checks that the certificate it presents chains to root (the pinned CA
// root, through the intermediates the daemon sends), is for server use and
// covers the host name of addr, the way the docker CLI will check it. It
// presents no client certificate: a daemon that requires one ends the
// handshake after the check has been made, which is not an error here.
func VerifyDaemon(ctx context.Context, addr string, root *x509.Certificate) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultDaemonCheckTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDaemonUnreachable, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	var verified, seen bool
	var verr error
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: host,
		// The chain is judged in VerifyConnection, so the reason can be
		// told apart from the daemon refusing this certificate-less client.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			seen = true
			verr = verifyDaemonChain(cs.PeerCertificates, pool, host)
			verified = verr == nil
			return verr
		},
	}
	tc := tls.Client(conn, cfg)
	herr := tc.HandshakeContext(ctx)
	switch {
	case verified:
		return nil
	case verr != nil:
		return verr
	case !seen:
		var rh tls.RecordHeaderError
		if errors.As(herr, &rh) {
			return fmt.Errorf("%w: it answered in plain text (a daemon without --tlsverify?)", ErrDaemonNoTLS)
		}
		return fmt.Errorf("%w: %v", ErrDaemonNoTLS, herr)
	}
	return herr
}

func verifyDaemonChain(chain []*x509.Certificate, roots *x509.CertPool, host string) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: it presented no certificate", ErrDaemonForeign)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("%w: %v", ErrDaemonForeign, err)
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return fmt.Errorf("%w: %v", ErrDaemonWrongName, err)
	}
	return nil
}
