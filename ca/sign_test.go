package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/x509util"
)

// dockca signed through smallstep's Authority.Sign with x509util text
// templates until its own signing path replaced it (sign.go). The reference
// path below is that old one, kept here to prove the certificates are the
// same: every field but the serial number and the signature. Nothing is
// recorded through it (store.AuthDB implements no certificate storer).
func TestSignMatchesSmallstepPath(t *testing.T) {
	for _, kt := range []pki.KeyType{pki.KeyECP256, pki.KeyECP384, pki.KeyRSA3072, pki.KeyEd25519} {
		t.Run(string(kt), func(t *testing.T) {
			_, a := newCA(t, kt, "")
			rsaKey, err := pki.GenerateKey(pki.KeyRSA3072)
			if err != nil {
				t.Fatal(err)
			}
			for name, tc := range map[string]struct {
				r    Request
				kind pki.Kind
				key  crypto.Signer
			}{
				"client":     {r: Request{Kind: pki.KindClient, Name: "alice", Role: pki.RoleOperator, TTL: 48 * time.Hour}},
				"daemon":     {r: Request{Kind: pki.KindDaemon, Name: "docker1.example", SANs: []string{"10.0.0.7", "docker1", "::1"}}},
				"daemon-rsa": {r: Request{Kind: pki.KindDaemon, Name: "h.example"}, key: rsaKey},
				"service":    {r: Request{Kind: pki.KindDaemon, Name: "127.0.0.1", SANs: []string{"localhost"}}, kind: pki.KindService},
			} {
				key := tc.key
				if key == nil {
					if key, err = pki.GenerateKey(pki.KeyECP256); err != nil {
						t.Fatal(err)
					}
				}
				n, err := a.Check(tc.r)
				if err != nil {
					t.Fatal(err)
				}
				kind := tc.kind
				if kind == "" {
					kind = n.Kind
				}
				ours, _, err := a.sign(context.Background(), n, key.Public(), kind, Provenance{Actor: "test"})
				if err != nil {
					t.Fatal(err)
				}
				theirs := signViaSmallstep(t, a, n, key, kind)
				for field, pair := range map[string][2]any{
					"subject":    {ours.RawSubject, theirs.RawSubject},
					"issuer":     {ours.RawIssuer, theirs.RawIssuer},
					"public key": {ours.RawSubjectPublicKeyInfo, theirs.RawSubjectPublicKeyInfo},
					"extensions": {extensionsOf(ours), extensionsOf(theirs)},
					"validity":   {ours.NotBefore.String() + ours.NotAfter.String(), theirs.NotBefore.String() + theirs.NotAfter.String()},
					"algorithm":  {ours.SignatureAlgorithm, theirs.SignatureAlgorithm},
					"version":    {ours.Version, theirs.Version},
					"serial len": {ours.SerialNumber.BitLen() > 128, theirs.SerialNumber.BitLen() > 128},
				} {
					if fmt.Sprint(pair[0]) != fmt.Sprint(pair[1]) {
						t.Errorf("%s: %s differs:\n ours   %x\n theirs %x", name, field, pair[0], pair[1])
					}
				}
			}
		})
	}
}

func extensionsOf(c *x509.Certificate) string {
	var b bytes.Buffer
	for _, e := range c.Extensions {
		fmt.Fprintf(&b, "%v/%t/%x ", e.Id, e.Critical, e.Value)
	}
	return b.String()
}

// signViaSmallstep is the old signing path: smallstep's Sign with the
// profile as x509util template JSON and the same validity.
func signViaSmallstep(t *testing.T, a *Authority, n *Normalized, key crypto.Signer, kind pki.Kind) *x509.Certificate {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkixName(n.Name)}
	for _, s := range n.SANs {
		if s.IP != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, s.IP)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, s.DNS)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	sans := make([]string, len(n.SANs))
	for i, s := range n.SANs {
		sans[i] = s.String()
	}
	data := x509util.CreateTemplateData(n.Name, sans)
	data.Set("Org", a.rec.Name)
	data.Set("RSA", pki.IsRSA(key.Public()))
	if kind == pki.KindService {
		data.Set("ServiceOU", pki.ServiceOU)
	}
	text := oldDaemonTemplate
	if n.Kind == pki.KindClient {
		data.Set("Role", n.Role)
		data.SetSANs(nil)
		text = oldClientTemplate
	}
	chain, err := a.step.SignWithContext(context.Background(), csr, provisioner.SignOptions{},
		oldTemplate{text: text, data: data},
		provisioner.CertificateModifierFunc(func(cert *x509.Certificate, _ provisioner.SignOptions) error {
			cert.NotBefore, cert.NotAfter = n.NotBefore, n.NotAfter
			serial, err := pki.RandomSerial()
			if err != nil {
				return err
			}
			cert.SerialNumber = serial
			if cert.SubjectKeyId == nil {
				cert.SubjectKeyId, err = subjectKeyID(cert.PublicKey)
			}
			return err
		}))
	if err != nil {
		t.Fatal(err)
	}
	return chain[0]
}

// The profiles as they were, as x509util templates.
const (
	oldClientTemplate = `{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}, "organizationalUnit": {{ toJson .Role }}, "organization": {{ toJson .Org }}},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"]
}`
	oldDaemonTemplate = `{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}, "organization": {{ toJson .Org }}
{{- if .ServiceOU }}, "organizationalUnit": {{ toJson .ServiceOU }}{{ end }}},
	"sans": {{ toJson .SANs }},
{{- if .RSA }}
	"keyUsage": ["digitalSignature", "keyEncipherment"],
{{- else }}
	"keyUsage": ["digitalSignature"],
{{- end }}
	"extKeyUsage": ["serverAuth"]
}`
)

type oldTemplate struct {
	text string
	data x509util.TemplateData
}

func (t oldTemplate) Options(provisioner.SignOptions) []x509util.Option {
	return []x509util.Option{x509util.WithTemplate(t.text, t.data)}
}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }
