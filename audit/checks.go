package audit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dockca/dockca/pki"
)

// ExpiryWarning is how close to its end a server certificate is reported.
const ExpiryWarning = 30 * 24 * time.Hour

// timeLayout is dockca's one time format: RFC 3339, printed in UTC.
const timeLayout = time.RFC3339

// certFindings judges the server certificate on its own: dates, names, key
// and signature. host is the target as the admin gave it.
func certFindings(ep Endpoint, leaf *x509.Certificate, now time.Time) []Finding {
	var fs []Finding
	add := func(sev Severity, id, what, detail string) {
		fs = append(fs, Finding{Target: ep.Host, Port: ep.Port, Severity: sev, ID: id, Finding: what, Detail: detail})
	}
	switch {
	case now.After(leaf.NotAfter):
		add(High, "cert-expired", "server certificate expired",
			fmt.Sprintf("not valid after %s", leaf.NotAfter.UTC().Format(timeLayout)))
	case now.Before(leaf.NotBefore):
		add(High, "cert-not-yet-valid", "server certificate not yet valid",
			fmt.Sprintf("not valid before %s", leaf.NotBefore.UTC().Format(timeLayout)))
	case leaf.NotAfter.Sub(now) < ExpiryWarning:
		add(High, "cert-expiring", "server certificate expires within 30 days",
			fmt.Sprintf("not valid after %s (%d days left)", leaf.NotAfter.UTC().Format(timeLayout), int(leaf.NotAfter.Sub(now).Hours()/24)))
	}
	if err := leaf.VerifyHostname(ep.Host); err != nil {
		add(High, "cert-name-mismatch", "server certificate does not name the target",
			fmt.Sprintf("target %s; certificate names %s", ep.Host, certNames(leaf)))
	}
	switch k := leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			add(High, "cert-weak-key", "weak server key", fmt.Sprintf("RSA %d bits (need 2048 or more)", k.N.BitLen()))
		}
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize < 256 {
			add(High, "cert-weak-key", "weak server key", fmt.Sprintf("ECDSA %s (need P-256 or stronger)", k.Curve.Params().Name))
		}
	}
	switch leaf.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		add(Medium, "cert-weak-signature", "server certificate has a weak signature", leaf.SignatureAlgorithm.String())
	}
	return fs
}

func certNames(c *x509.Certificate) string {
	names := pki.SANStrings(c)
	if len(names) == 0 {
		if c.Subject.CommonName != "" {
			return "none (only CN " + c.Subject.CommonName + ", which is not used for name checks)"
		}
		return "none"
	}
	return strings.Join(names, ", ")
}

// caCheck is the verdict on the server's place in the dockca PKI.
type caCheck struct {
	findings   []Finding
	issuedByUs bool
}

// caFindings checks, against the dockca roots, who issued the server
// certificate and which CAs the server says it accepts client certificates
// from. It only judges issuance: dates and names are certFindings' job, so
// the chain is verified at a time inside the leaf's validity.
func caFindings(ep Endpoint, chain []*x509.Certificate, roots []*x509.Certificate, requested bool, acceptable [][]byte, now time.Time) caCheck {
	var res caCheck
	add := func(sev Severity, id, what, detail string) {
		res.findings = append(res.findings, Finding{Target: ep.Host, Port: ep.Port, Severity: sev, ID: id, Finding: what, Detail: detail})
	}
	leaf := chain[0]
	pool := x509.NewCertPool()
	ours := [][]byte{}
	for _, r := range roots {
		pool.AddCert(r)
		ours = append(ours, r.RawSubject)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// Verify at now; if the leaf's own dates are the problem (reported by
	// certFindings), verify again at a moment inside its validity.
	times := []time.Time{now}
	if now.After(leaf.NotAfter) {
		times = append(times, leaf.NotAfter.Add(-time.Second))
	} else if now.Before(leaf.NotBefore) {
		times = append(times, leaf.NotBefore.Add(time.Second))
	}
	var chains [][]*x509.Certificate
	var err error
	for _, at := range times {
		chains, err = leaf.Verify(x509.VerifyOptions{
			Roots:         pool,
			Intermediates: inter,
			CurrentTime:   at,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err == nil {
			break
		}
	}
	var unknown x509.UnknownAuthorityError
	switch {
	case err == nil:
		res.issuedByUs = true
		for _, c := range chains {
			for _, ca := range c[1:] {
				ours = append(ours, ca.RawSubject)
			}
		}
	case errors.As(err, &unknown):
		add(High, "cert-foreign-ca", "server certificate not issued by this dockca CA",
			fmt.Sprintf("issuer %s", leaf.Issuer))
	default:
		add(Medium, "cert-chain-unverifiable", "server certificate chain cannot be evaluated",
			fmt.Sprintf("verify against the dockca root: %v", err))
	}
	if requested && len(acceptable) > 0 {
		var foreign []string
		for _, subj := range acceptable {
			if !containsBytes(ours, subj) {
				foreign = append(foreign, subjectString(subj))
			}
		}
		if len(foreign) > 0 {
			add(High, "client-ca-foreign", "server accepts client certificates from another CA",
				"accepted CAs include "+listSome(foreign, 3))
		}
	}
	return res
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}

// subjectString renders a DER subject as sent in a CertificateRequest.
func subjectString(der []byte) string {
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdn); err != nil || len(rest) > 0 {
		return "(unparsable name)"
	}
	var n pkix.Name
	n.FillFromRDNSequence(&rdn)
	return n.String()
}

func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(items[:n], "; "), len(items)-n)
}

func tlsVersionName(v uint16) string {
	if v == 0 {
		return ""
	}
	return tls.VersionName(v)
}
