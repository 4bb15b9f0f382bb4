package authz

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
)

// testPKI stands in for the dockca core (not merged yet): a root, an
// intermediate that signs everything, and leaves shaped like dockca's client
// certificates (CN = name, single OU = role, EKU clientAuth only).
type testPKI struct {
	rootKey, interKey crypto.Signer
	root, inter       *x509.Certificate
}

type testLeaf struct {
	cert *x509.Certificate
	key  crypto.Signer
	pki  *testPKI
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub any, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{rootKey: newKey(t), interKey: newKey(t)}
	now := time.Now()
	rootT := &x509.Certificate{SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "dockca test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	p.root = sign(t, rootT, rootT, p.rootKey.Public(), p.rootKey)
	interT := &x509.Certificate{SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "dockca test intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	p.inter = sign(t, interT, p.root, p.interKey.Public(), p.rootKey)
	return p
}

type leafOpt func(*x509.Certificate)

func withOU(ou ...string) leafOpt {
	return func(c *x509.Certificate) { c.Subject.OrganizationalUnit = ou }
}
func withValidity(nb, na time.Time) leafOpt {
	return func(c *x509.Certificate) { c.NotBefore, c.NotAfter = nb, na }
}
func withEKU(eku ...x509.ExtKeyUsage) leafOpt {
	return func(c *x509.Certificate) { c.ExtKeyUsage = eku }
}

// client issues a client certificate from the intermediate.
func (p *testPKI) client(t testing.TB, cn, role string, opts ...leafOpt) *testLeaf {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: cn, OrganizationalUnit: []string{role}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(12 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, o := range opts {
		o(tmpl)
	}
	k := newKey(t)
	return &testLeaf{cert: sign(t, tmpl, p.inter, k.Public(), p.interKey), key: k, pki: p}
}

// server issues dockerd's certificate for 127.0.0.1.
func (p *testPKI) server(t testing.TB) *testLeaf {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(12 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}}
	k := newKey(t)
	return &testLeaf{cert: sign(t, tmpl, p.inter, k.Public(), p.interKey), key: k, pki: p}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// chain is what dockerd hands the plugin: leaf then intermediate, as PEM.
func (l *testLeaf) chain() [][]byte { return [][]byte{pemCert(l.cert), pemCert(l.pki.inter)} }

// writeFiles writes ca.pem, cert.pem (leaf + intermediate) and key.pem the
// way the docker CLI and dockerd read them, and returns the directory.
func (l *testLeaf) writeFiles(t testing.TB, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(l.key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ca.pem":   pemCert(l.pki.root),
		"cert.pem": append(pemCert(l.cert), pemCert(l.pki.inter)...),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// mapRevocations is the local-mode stand-in until the lead wires the store.
type mapRevocations struct {
	mu sync.Mutex
	m  map[string]Revocation
}

func newMapRevocations() *mapRevocations { return &mapRevocations{m: map[string]Revocation{}} }

func (m *mapRevocations) revoke(c *x509.Certificate, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[pki.SerialOf(c)] = Revocation{RevokedAt: time.Now().UTC().Truncate(time.Second), Reason: reason}
}

func (m *mapRevocations) Revoked(_ context.Context, c *x509.Certificate) (*Revocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.m[pki.SerialOf(c)]; ok {
		return &r, nil
	}
	return nil, nil
}
