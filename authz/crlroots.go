package authz

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// Remote mode follows a CA rotation without a restart. The service is
// verified against the roots trusted now (the pinned one at start); with
// each CRL fetch the source also reads the service's trust bundle (GET
// /v1/roots) over that verified connection, from dockca's service
// certificate only, and trusts what it lists: during a root rotation's
// overlap the new root joins the pinned one, and after rotate finish the
// old one leaves, so certificates under it are refused. The plugin's unit
// keeps --fingerprint of the root it was installed with: after a finish it
// must name the new root before the plugin's next start.

// Roots implements TrustSource: the roots the service's bundle listed at
// the last fetch (the pinned root and OtherRoots before the first).
func (s *CRLSource) Roots() []*x509.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.roots
}

// serviceTLS is the TLS configuration of the default client: the
// service's certificate must chain to a root trusted now and be for host,
// the one dialled (refreshRoots also wants dockca's service certificate).
func (s *CRLSource) serviceTLS(host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: host,
		// Verified below against the roots trusted now, which a
		// rotation changes while the client lives.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the service presented no certificate")
			}
			pool, inters := x509.NewCertPool(), x509.NewCertPool()
			for _, r := range s.Roots() {
				pool.AddCert(r)
			}
			for _, c := range cs.PeerCertificates[1:] {
				inters.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			chains, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, Intermediates: inters,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CurrentTime: s.o.Now()})
			if err != nil {
				return fmt.Errorf("the service's certificate: %w", err)
			}
			s.learnIssuers(&tls.ConnectionState{VerifiedChains: chains})
			return nil
		},
	}
}

// dialService connects to the service at addr over TLS, verified by
// serviceTLS for addr's host.
func (s *CRLSource) dialService(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}, Config: s.serviceTLS(host)}
	return d.DialContext(ctx, network, addr)
}

// refreshRoots reads the service's trust bundle and trusts it. Only over
// the default client, whose handshake checked the service certificate.
func (s *CRLSource) refreshRoots(ctx context.Context) error {
	if !s.followRoots {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(s.url, api.PathCRL)+api.PathRoots, nil)
	if err != nil {
		return err
	}
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch roots: %w", err)
	}
	defer resp.Body.Close()
	// Only dockca's own service certificate speaks for the CA's trust:
	// any daemon certificate of the CA also chains to its root.
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 ||
		!slices.Contains(resp.TLS.PeerCertificates[0].Subject.OrganizationalUnit, pki.ServiceOU) {
		return errors.New("fetch roots: the server's certificate is not a dockca service certificate")
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch roots: %s answered %s", s.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("fetch roots: %w", err)
	}
	roots, err := tlsbundle.Certs(body)
	if err != nil {
		return fmt.Errorf("fetch roots: %w", err)
	}
	for _, r := range roots {
		if !r.IsCA || r.CheckSignatureFrom(r) != nil {
			return fmt.Errorf("fetch roots: %s is not a root certificate", r.Subject)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(roots) == len(s.roots) && !slices.ContainsFunc(roots, func(r *x509.Certificate) bool {
		return !slices.ContainsFunc(s.roots, r.Equal)
	}) {
		return nil
	}
	s.roots = roots
	for _, r := range roots {
		s.signer[string(r.RawSubject)] = r
		s.rootSubjects[string(r.RawSubject)] = true
	}
	return nil
}
