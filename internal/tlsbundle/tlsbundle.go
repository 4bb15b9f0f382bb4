// Package tlsbundle is the hand-off format between dockca's certificate
// authority and the packages that put certificates where Docker reads them
// (contexts for the docker CLI, daemonsetup for dockerd). A Bundle is the
// three PEM files Docker wants — the root, the leaf followed by its
// intermediate, and the private key — and Check is the one place that decides
// whether such a set is usable: the key matches the leaf, the chain leads to
// the root, and the certificate is meant for the role it will play. Both
// writers check before they write and when they decide whether existing files
// can be kept, so they never install, or keep, a pair that Docker would
// reject at connect time.
package tlsbundle

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dockca/dockca/pki"
)

// Bundle is PEM material for one TLS identity.
type Bundle struct {
	// CA is the dockca root certificate (PEM).
	CA []byte
	// Cert is the leaf certificate followed by the intermediate (PEM).
	Cert []byte
	// Key is the leaf's private key (PEM). Never log it.
	Key []byte
	// Serial is the leaf's serial number, lowercase hex without separators.
	Serial string
	// NotAfter is the leaf's expiry.
	NotAfter time.Time
}

// ErrInvalid marks material that must not be installed or kept.
var ErrInvalid = errors.New("invalid TLS material")

// Check verifies that the bundle is coherent and valid at now for usage
// (x509.ExtKeyUsageClientAuth or ExtKeyUsageServerAuth), and returns the
// parsed leaf. Serial and NotAfter, when set, must describe the leaf: they
// are copied into metadata and must not lie.
func (b *Bundle) Check(now time.Time, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: no material", ErrInvalid)
	}
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		// The tls error text names the mismatch but never the key bytes.
		return nil, fmt.Errorf("%w: certificate and key: %v", ErrInvalid, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%w: leaf certificate: %v", ErrInvalid, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b.CA) {
		return nil, fmt.Errorf("%w: no CA certificate in ca.pem", ErrInvalid)
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: intermediate certificate: %v", ErrInvalid, err)
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{usage},
	}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if b.Serial != "" && b.Serial != pki.FormatSerial(leaf.SerialNumber) {
		return nil, fmt.Errorf("%w: serial %s does not match the certificate (%s)", ErrInvalid, b.Serial, pki.FormatSerial(leaf.SerialNumber))
	}
	if !b.NotAfter.IsZero() && !b.NotAfter.Equal(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: not-after %s does not match the certificate (%s)", ErrInvalid, b.NotAfter, leaf.NotAfter)
	}
	return leaf, nil
}

// Leaf parses the first certificate of a PEM chain.
func Leaf(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != pki.PEMTypeCertificate {
		return nil, fmt.Errorf("%w: no certificate PEM block", ErrInvalid)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return c, nil
}

// SameCA reports whether two ca.pem files hold the same roots, in any
// order (during a CA rotation's overlap a bundle holds two, and a client
// lists its pinned one first), ignoring whitespace and trailing material,
// so that a re-encoded copy still counts as the same.
func SameCA(a, b []byte) bool {
	ca, errA := Certs(a)
	cb, errB := Certs(b)
	if errA != nil || errB != nil || len(ca) != len(cb) {
		return false
	}
	for _, x := range ca {
		if !slices.ContainsFunc(cb, func(y *x509.Certificate) bool { return bytes.Equal(x.Raw, y.Raw) }) {
			return false
		}
	}
	return true
}

// Due reports whether a certificate valid from notBefore to notAfter is
// due for renewal at now, and from when it is: within the last `within`
// of its lifetime, or, when within is zero, within the last third of it.
// Both commands that renew on request (context renew, renew --cert-dir)
// use this one rule.
func Due(notBefore, notAfter, now time.Time, within time.Duration) (bool, time.Time) {
	if within <= 0 {
		within = notAfter.Sub(notBefore) / 3
	}
	from := notAfter.Add(-within)
	return !now.Before(from), from
}

// Certs parses every certificate of a PEM file, in order: a ca.pem holds
// one root, or during a CA rotation's overlap the current and the old one.
func Certs(certsPEM []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, certsPEM = pem.Decode(certsPEM)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no certificate PEM block", ErrInvalid)
	}
	return out, nil
}

// HasFingerprint reports whether one of certs has the SHA-256 fingerprint
// fp (Fingerprint's form).
func HasFingerprint(certs []*x509.Certificate, fp string) bool {
	for _, c := range certs {
		if pki.Fingerprint(c) == fp {
			return true
		}
	}
	return false
}
