package audit

// A small test PKI (root → intermediate → leaves, ECDSA P-256) shaped like
// dockca's, so the audit can be tested before the real ca package is wired
// in. It stays in a _test.go file: the audit itself never issues anything.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type testCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
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

// newTestCA makes a root and an intermediate named after name.
func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	now := time.Now()
	ca := &testCA{rootKey: newKey(t), interKey: newKey(t)}
	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " Root CA"},
		NotBefore:             now.Add(-30 * 24 * time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	ca.root = sign(t, rootTmpl, rootTmpl, ca.rootKey.Public(), ca.rootKey)
	ca.inter = sign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " Intermediate CA"},
		NotBefore:             now.Add(-30 * 24 * time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, ca.root, ca.interKey.Public(), ca.rootKey)
	return ca
}

type leafOpts struct {
	client              bool // client certificate instead of server
	ips                 []net.IP
	dns                 []string
	notBefore, notAfter time.Time
	rsaBits             int // RSA key of this size instead of ECDSA P-256
}

// leaf issues a certificate from the intermediate; the chain includes the
// intermediate, as dockerd and the docker CLI need it.
func (ca *testCA) leaf(t testing.TB, o leafOpts) tls.Certificate {
	t.Helper()
	now := time.Now()
	if o.notBefore.IsZero() {
		o.notBefore = now.Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = now.Add(90 * 24 * time.Hour)
	}
	var key crypto.Signer = newKey(t)
	if o.rsaBits != 0 {
		k, err := rsa.GenerateKey(rand.Reader, o.rsaBits)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "docker server"},
		NotBefore:   o.notBefore,
		NotAfter:    o.notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: o.ips,
		DNSNames:    o.dns,
	}
	if o.client {
		tmpl.Subject.CommonName = "docker client"
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	c := sign(t, tmpl, ca.inter, key.Public(), ca.interKey)
	return tls.Certificate{Certificate: [][]byte{c.Raw, ca.inter.Raw}, PrivateKey: key, Leaf: c}
}

// serverLeaf is a good server certificate for 127.0.0.1.
func (ca *testCA) serverLeaf(t testing.TB) tls.Certificate {
	return ca.leaf(t, leafOpts{ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root)
	return p
}

// writeFiles writes the root and cert (chain and key) as PEM files for
// dockerd or the docker CLI: ca.pem, <prefix>cert.pem, <prefix>key.pem.
func writeFiles(t testing.TB, dir string, root *x509.Certificate, prefix string, cert tls.Certificate) (caFile, certFile, keyFile string) {
	t.Helper()
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, prefix+"cert.pem")
	keyFile = filepath.Join(dir, prefix+"key.pem")
	write := func(path string, blocks ...*pem.Block) {
		var data []byte
		for _, b := range blocks {
			data = append(data, pem.EncodeToMemory(b)...)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(caFile, &pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	var chain []*pem.Block
	for _, der := range cert.Certificate {
		chain = append(chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	write(certFile, chain...)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	write(keyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return caFile, certFile, keyFile
}
