package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// sign makes, signs and stores one leaf for a request that passed the
// policy. It is what smallstep's Authority.Sign did for dockca, without
// the parts dockca never used and that cost most of a signing's time
// under load: the CSR's signature checked twice more (check has verified
// it), a certificate template rendered to JSON and parsed back, and the
// provisioner, webhook and policy-engine hooks, none of which dockca
// configures. The certificate is the same (ca/sign_test.go compares both
// paths field by field), and it is stored, with its token spent, in the
// transaction that records it, before it is handed out.
func (a *Authority) sign(ctx context.Context, n *Normalized, pub crypto.PublicKey, kind pki.Kind, prov Provenance) (*x509.Certificate, *store.Certificate, error) {
	tmpl, err := a.leafTemplate(n, pub, kind)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.intermediate, pub, a.signer)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	rec := a.record(leaf, kind, prov)
	if err := a.st.PutCertificate(ctx, rec); err != nil {
		if errors.Is(err, store.ErrRenewedFromRevoked) {
			return nil, nil, ErrRevoked
		}
		return nil, nil, err
	}
	return leaf, rec, nil
}

// leafTemplate is dockca's profile for n: the subject and names come from
// the validated request, never straight from a CSR, so a CSR cannot
// smuggle in names or extensions the policy did not see.
func (a *Authority) leafTemplate(n *Normalized, pub crypto.PublicKey, kind pki.Kind) (*x509.Certificate, error) {
	serial, err := pki.RandomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: n.Name, Organization: []string{a.rec.Name}},
		NotBefore:    n.NotBefore,
		NotAfter:     n.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		SubjectKeyId: skid,
		PublicKey:    pub,
	}
	if n.Kind == pki.KindClient {
		t.Subject.OrganizationalUnit = []string{string(n.Role)}
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		// A client's scope: URI SANs urn:dockca:scope:G (pki.GroupURIs).
		if t.URIs, err = pki.GroupURIs(pki.ScopeURNPrefix, n.Groups); err != nil {
			return nil, err
		}
	} else {
		for _, s := range n.SANs {
			if s.IP != nil {
				t.IPAddresses = append(t.IPAddresses, s.IP)
			} else {
				t.DNSNames = append(t.DNSNames, s.DNS)
			}
		}
		if kind == pki.KindService {
			t.Subject.OrganizationalUnit = []string{pki.ServiceOU}
		}
		if kind == pki.KindDaemon {
			// A daemon's groups: URI SANs urn:dockca:group:G.
			if t.URIs, err = pki.GroupURIs(pki.GroupURNPrefix, n.Groups); err != nil {
				return nil, err
			}
		}
		if pki.IsRSA(pub) {
			t.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	// An RSA intermediate signs with the scheme it was signed with, as
	// smallstep's soft CAS did.
	if _, ok := a.intermediate.PublicKey.(*rsa.PublicKey); ok {
		switch a.intermediate.SignatureAlgorithm {
		case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA:
			t.SignatureAlgorithm = a.intermediate.SignatureAlgorithm
		}
	}
	return t, nil
}
