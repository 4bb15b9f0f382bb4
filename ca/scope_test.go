package ca

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/dockca/dockca/pki"
)

// A client's scope and a daemon's groups are carried by the certificate as
// URI SANs that openssl shows, and recorded in the store as the
// certificate carries them (sorted, without duplicates).
func TestScopeAndGroupsInCertificateAndRecord(t *testing.T) {
	_, a := newCA(t, pki.KeyECP256, "")
	ctx := context.Background()
	cl, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "dev", Role: pki.RoleOperator, Groups: []string{"staging", "prod", "staging"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := pki.ScopeOf(cl.Leaf); !slices.Equal(got, []string{"prod", "staging"}) {
		t.Errorf("ScopeOf = %v", got)
	}
	if got := pki.GroupsOf(cl.Leaf); got != nil {
		t.Errorf("GroupsOf(client) = %v, want none", got)
	}
	if !slices.Equal(cl.Record.Groups, []string{"prod", "staging"}) {
		t.Errorf("record groups = %v", cl.Record.Groups)
	}
	d, err := a.Issue(ctx, Request{Kind: pki.KindDaemon, Name: "prod1.example", Groups: []string{"prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := pki.GroupsOf(d.Leaf); !slices.Equal(got, []string{"prod"}) {
		t.Errorf("GroupsOf = %v", got)
	}
	if !slices.Equal(d.Record.SANs, []string{"prod1.example"}) || !slices.Equal(d.Record.Groups, []string{"prod"}) {
		t.Errorf("record SANs %v groups %v", d.Record.SANs, d.Record.Groups)
	}
	plain, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "old", Role: pki.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if pki.ScopeOf(plain.Leaf) != nil || plain.Record.Groups != nil || len(plain.Leaf.URIs) != 0 {
		t.Errorf("an unscoped client carries %v / %v", plain.Leaf.URIs, plain.Record.Groups)
	}

	if _, err := exec.LookPath("openssl"); err == nil {
		cmd := exec.Command("openssl", "x509", "-noout", "-ext", "subjectAltName")
		cmd.Stdin = strings.NewReader(string(pki.PEMChain(cl.Leaf)))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
		for _, want := range []string{"URI:urn:dockca:scope:prod", "URI:urn:dockca:scope:staging"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("openssl does not show %s:\n%s", want, out)
			}
		}
	}

	// A renewal keeps the scope.
	rn, err := a.Renew(ctx, cl.Leaf, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pki.ScopeOf(rn.Leaf), []string{"prod", "staging"}) {
		t.Errorf("renewal scope = %v", pki.ScopeOf(rn.Leaf))
	}

	for _, bad := range []string{"", "Prod", "a b", "-x", "x/y", strings.Repeat("a", 64)} {
		if _, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "x", Role: pki.RoleAdmin, Groups: []string{bad}}); !errors.Is(err, pki.ErrPolicy) {
			t.Errorf("group %q: err = %v, want a policy error", bad, err)
		}
	}
}
