// Package testca is a small certificate authority for tests of the packages
// that install dockca certificates. It has the same shape as the real one —
// an ECDSA P-256 root, an intermediate that signs leaves, leaf PEM followed by
// the intermediate — so that what the real dockerd and docker CLI accept in
// these tests is what they will accept from dockca. It also counts issuances
// and keeps a revocation set, so tests can assert that bad input issued
// nothing and that revocation reached the CA.
package testca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/contexts"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// CA is a root and an intermediate kept in memory.
type CA struct {
	RootPEM []byte

	root, inter *x509.Certificate
	interKey    *ecdsa.PrivateKey
	interPEM    []byte
	mu          sync.Mutex
	issued      int
	revoked     map[string]bool
	now         func() time.Time
}

// New makes a fresh CA; it fails the test on error.
func New(t testing.TB) *CA {
	t.Helper()
	ca, err := newCA()
	if err != nil {
		t.Fatalf("test CA: %v", err)
	}
	return ca
}

func newCA() (*CA, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dockca test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(rootDER)
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "dockca test intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, root, &interKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	inter, _ := x509.ParseCertificate(interDER)
	return &CA{
		RootPEM:  pki.PEMDER(rootDER),
		root:     root,
		inter:    inter,
		interKey: interKey,
		interPEM: pki.PEMDER(interDER),
		revoked:  map[string]bool{},
		now:      time.Now,
	}, nil
}

// Request describes one leaf.
type Request struct {
	CommonName string
	Role       string // lands in OU, as an authorization plugin would read it
	DNSNames   []string
	IPs        []net.IP
	Usage      x509.ExtKeyUsage
	TTL        time.Duration
}

// Issue signs a new leaf with a fresh key.
func (c *CA) Issue(r Request) (*tlsbundle.Bundle, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	if r.TTL == 0 {
		r.TTL = 24 * time.Hour
	}
	now := c.now()
	subj := pkix.Name{CommonName: r.CommonName}
	if r.Role != "" {
		subj.OrganizationalUnit = []string{r.Role}
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: subj,
		NotBefore: now.Add(-time.Minute).Truncate(time.Second), NotAfter: now.Add(r.TTL).Truncate(time.Second),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{r.Usage},
		DNSNames:    r.DNSNames, IPAddresses: r.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.inter, &key.PublicKey, c.interKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.issued++
	c.mu.Unlock()
	cert := append(pki.PEMDER(der), c.interPEM...)
	return &tlsbundle.Bundle{
		CA:       append([]byte(nil), c.RootPEM...),
		Cert:     cert,
		Key:      pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		Serial:   pki.FormatSerial(sn),
		NotAfter: tmpl.NotAfter,
	}, nil
}

// Issued is how many leaves were signed so far.
func (c *CA) Issued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.issued
}

// RevokeSerial records serial as revoked.
func (c *CA) RevokeSerial(serial string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if serial == "" {
		return fmt.Errorf("revoke: empty serial")
	}
	c.revoked[serial] = true
	return nil
}

// IsRevoked reports whether serial was revoked.
func (c *CA) IsRevoked(serial string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.revoked[serial]
}

// SetClock makes the CA issue as if now were the given function's answer.
func (c *CA) SetClock(now func() time.Time) { c.now = now }

// The methods below implement the interfaces contexts and daemonsetup
// define for the core CA, so tests can hand a *CA to either.

// IssueClient implements contexts.Issuer.
func (c *CA) IssueClient(_ context.Context, client string, role pki.Role, ttl time.Duration) (*contexts.Material, error) {
	b, err := c.Issue(Request{CommonName: client, Role: string(role), Usage: x509.ExtKeyUsageClientAuth, TTL: ttl})
	if err != nil {
		return nil, err
	}
	return &contexts.Material{Bundle: *b, Client: client, Role: role}, nil
}

// Revoke implements contexts.Revoker.
func (c *CA) Revoke(_ context.Context, serial string) error { return c.RevokeSerial(serial) }

// Revoked implements contexts.StatusChecker.
func (c *CA) Revoked(_ context.Context, serial string) (bool, error) { return c.IsRevoked(serial), nil }

// CACertificate implements daemonsetup.Issuer.
func (c *CA) CACertificate(context.Context) ([]byte, error) { return c.RootPEM, nil }

// IssueDaemon implements daemonsetup.Issuer: host and sans become IP or
// DNS SANs.
func (c *CA) IssueDaemon(_ context.Context, host string, sans []string, ttl time.Duration) (*tlsbundle.Bundle, error) {
	r := Request{CommonName: host, Usage: x509.ExtKeyUsageServerAuth, TTL: ttl}
	for _, n := range append([]string{host}, sans...) {
		if ip := net.ParseIP(n); ip != nil {
			r.IPs = append(r.IPs, ip)
		} else {
			r.DNSNames = append(r.DNSNames, n)
		}
	}
	return c.Issue(r)
}
