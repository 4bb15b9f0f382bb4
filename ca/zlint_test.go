package ca

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/dockca/dockca/pki"
	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// Every profile, and the CA certificates themselves, must pass zlint's RFC
// 5280 lints with no error or warning.
func TestProfilesPassZlintRFC5280(t *testing.T) {
	registry, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{lint.RFC5280}})
	if err != nil {
		t.Fatal(err)
	}
	if len(registry.Names()) < 50 {
		t.Fatalf("only %d RFC 5280 lints registered", len(registry.Names()))
	}
	for _, kt := range pki.KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			_, a := newCA(t, kt, "")
			ctx := context.Background()
			client, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "alice@example", Role: pki.RoleOperator})
			if err != nil {
				t.Fatal(err)
			}
			daemon, err := a.Issue(ctx, Request{Kind: pki.KindDaemon, Name: "docker1.example.com", SANs: []string{"10.0.0.7", "::1", "docker1"}})
			if err != nil {
				t.Fatal(err)
			}
			ipDaemon, err := a.Issue(ctx, Request{Kind: pki.KindDaemon, Name: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			// Groups and scope are URI SANs (pki/scope.go): they must stay clean too.
			scoped, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "bob", Role: pki.RoleReadonly, Groups: []string{"staging", "prod"}})
			if err != nil {
				t.Fatal(err)
			}
			grouped, err := a.Issue(ctx, Request{Kind: pki.KindDaemon, Name: "docker2.example.com", Groups: []string{"prod"}})
			if err != nil {
				t.Fatal(err)
			}
			service, err := a.IssueService(ctx, []string{"ca.example.com", "127.0.0.1"}, 0)
			if err != nil {
				t.Fatal(err)
			}
			for name, cert := range map[string]*x509.Certificate{
				"root": a.Root(), "intermediate": a.Intermediate(),
				"client": client.Leaf, "daemon": daemon.Leaf, "daemon-ip": ipDaemon.Leaf, "service": service.Leaf,
				"client-scoped": scoped.Leaf, "daemon-grouped": grouped.Leaf,
			} {
				zc, err := zx509.ParseCertificate(cert.Raw)
				if err != nil {
					t.Fatalf("%s: zcrypto parse: %v", name, err)
				}
				rs := zlint.LintCertificateEx(zc, registry)
				for lintName, r := range rs.Results {
					if r.Status == lint.Error || r.Status == lint.Warn || r.Status == lint.Fatal {
						t.Errorf("%s: %s: %s %s", name, lintName, r.Status, r.Details)
					}
				}
			}
		})
	}
}
