package authz

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/dockca/dockca/pki"
)

func withScope(groups ...string) leafOpt {
	return func(c *x509.Certificate) {
		for _, g := range groups {
			u, _ := url.Parse(pki.ScopeURNPrefix + g)
			c.URIs = append(c.URIs, u)
		}
	}
}

const prodReadonlyPolicy = `
group_roles:
  prod:
    operator: readonly
`

// The scope is checked before any role rule, the message names the client,
// its scope and the daemon's groups, and the audit line records it; a
// group_roles entry narrows a role on its group only.
func TestScopeAndGroupRoles(t *testing.T) {
	p := newPKI(t)
	pol, err := LoadPolicy(strings.NewReader(prodReadonlyPolicy))
	if err != nil {
		t.Fatal(err)
	}
	var audit bytes.Buffer
	staging := newTestAuthorizer(t, p, nil, func(o *Options) { o.Groups = []string{"staging"}; o.Policy = pol })
	prod := newTestAuthorizer(t, p, nil, func(o *Options) {
		o.Groups = []string{"prod"}
		o.Policy = pol
		o.Audit = NewAuditLog(&audit)
	})
	none := newTestAuthorizer(t, p, nil, func(o *Options) { o.Policy = pol })

	stagingOnly := p.client(t, "dev", "admin", withScope("staging"))
	unscoped := p.client(t, "ops", "operator")
	both := p.client(t, "lead", "operator", withScope("staging", "prod"))
	create := []byte(`{"Image":"busybox"}`)

	cases := []struct {
		name   string
		a      *Authorizer
		leaf   *testLeaf
		method string
		uri    string
		body   []byte
		allow  bool
		rule   string
		role   string
		msg    string
	}{
		{"scoped client on its group", staging, stagingOnly, "POST", "/v1.41/containers/create", create, true, "", "admin", ""},
		{"scoped client elsewhere, even admin", prod, stagingOnly, "GET", "/v1.41/_ping", nil, false, "out-of-scope", "",
			`dockca: client "dev" (` + pki.SerialOf(stagingOnly.cert) + `) has scope staging, which does not include this daemon's groups (prod)`},
		{"scoped client on a daemon in no group", none, stagingOnly, "GET", "/v1.41/_ping", nil, false, "out-of-scope", "",
			"this daemon's groups (none)"},
		{"unscoped operator on staging", staging, unscoped, "POST", "/v1.41/containers/create", create, true, "", "operator", ""},
		{"unscoped operator is readonly on prod", prod, unscoped, "POST", "/v1.41/containers/create", create, false, "", "readonly",
			"role readonly may not POST /containers/create"},
		{"unscoped operator reads prod", prod, unscoped, "GET", "/v1.41/containers/json", nil, true, "", "readonly", ""},
		{"scoped to both creates on staging", staging, both, "POST", "/v1.41/containers/create", create, true, "", "operator", ""},
		{"scoped to both only reads prod", prod, both, "POST", "/v1.41/containers/create", create, false, "", "readonly", "role readonly"},
		{"scoped to both reads prod", prod, both, "GET", "/v1.41/containers/json", nil, true, "", "readonly", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.a.Decide(context.Background(), tlsRequest(c.leaf, c.method, c.uri, c.body))
			if d.Allow != c.allow || (c.rule != "" && d.Rule != c.rule) || (c.role != "" && string(d.Role) != c.role) || !strings.Contains(d.Msg, c.msg) {
				t.Fatalf("got allow=%v rule=%q role=%q msg=%q; want allow=%v rule=%q role=%q msg containing %q",
					d.Allow, d.Rule, d.Role, d.Msg, c.allow, c.rule, c.role, c.msg)
			}
		})
	}
	var denied AuditEntry
	line, _, _ := strings.Cut(audit.String(), "\n")
	if err := json.Unmarshal([]byte(line), &denied); err != nil {
		t.Fatal(err)
	}
	if denied.Decision != "deny" || denied.Rule != "out-of-scope" || denied.User != "dev" || strings.Join(denied.Scope, ",") != "staging" ||
		!strings.Contains(denied.Reason, "does not include this daemon's groups (prod)") {
		t.Errorf("audit line = %+v", denied)
	}
}

func TestRoleOn(t *testing.T) {
	pol, err := LoadPolicy(strings.NewReader(`
roles:
  deployer:
    extends: readonly
    rules: []
group_roles:
  prod: {operator: readonly, admin: operator, deployer: readonly}
  edge: {operator: deployer}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		role    pki.Role
		through []string
		want    pki.Role
		err     bool
	}{
		{"operator", nil, "operator", false},
		{"operator", []string{"staging"}, "operator", false},
		{"operator", []string{"prod"}, "readonly", false},
		{"admin", []string{"prod", "staging"}, "operator", false}, // the narrowest built-in role
		{"operator", []string{"edge"}, "deployer", false},
		{"operator", []string{"edge", "staging"}, "", true}, // deployer and operator cannot be ordered
	} {
		got, err := pol.RoleOn(c.role, c.through)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("RoleOn(%s, %v) = %q, %v", c.role, c.through, got, err)
		}
	}
	for _, bad := range []string{
		"group_roles: {Prod: {operator: readonly}}",
		"group_roles: {prod: {operator: nosuchrole}}",
		"group_roles: {prod: {Operator: readonly}}",
	} {
		if _, err := LoadPolicy(strings.NewReader(bad)); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: err = %v, want ErrPolicy", bad, err)
		}
	}
}

func TestBadGroupOption(t *testing.T) {
	p := newPKI(t)
	if _, err := New(Options{Root: p.root, Revocations: newMapRevocations(), Groups: []string{"No Good"}}); !errors.Is(err, ErrOptions) {
		t.Fatalf("err = %v", err)
	}
}
