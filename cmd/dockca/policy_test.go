package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockca/dockca/store"
)

// TestPolicyRolesOffline: without a service, a stored policy's roles can
// be issued, signed, minted and put in contexts ('issue client bob --role
// deployer' failed "unknown role" before); an invalid policy changes
// nothing; roles the policy does not define are still refused.
func TestPolicyRolesOffline(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	if res := r.run("issue", "client", "bob", "--role", "deployer", "--out", filepath.Join(dir, "bob0")); res.code != 1 || !strings.Contains(res.err, `unknown role "deployer"`) {
		t.Fatalf("deployer before the policy: %+v", res)
	}
	before, _ := os.ReadFile(store.Path(r.home()))
	if res := r.run("policy", "set", "../../authz/testdata/policies/invalid-unknown-check.yaml"); res.code != 1 || !strings.Contains(res.err, "invalid policy") {
		t.Fatalf("invalid policy: %+v", res)
	}
	if res := r.run("policy", "set", filepath.Join(dir, "missing.yaml")); res.code != 1 || !strings.Contains(res.err, "missing.yaml") {
		t.Fatalf("missing policy file: %+v", res)
	}
	if after, _ := os.ReadFile(store.Path(r.home())); string(after) != string(before) {
		t.Fatal("a refused policy changed the database")
	}
	out := r.ok("policy", "set", "../../authz/testdata/policies/custom.yaml")
	if !strings.Contains(out, "deployer") {
		t.Fatalf("policy set: %s", out)
	}
	want, _ := os.ReadFile("../../authz/testdata/policies/custom.yaml")
	if got := r.ok("policy", "show"); got != string(want) {
		t.Fatalf("policy show:\n%s", got)
	}
	r.ok("issue", "client", "bob", "--role", "deployer", "--out", filepath.Join(dir, "bob"))
	csr := filepath.Join(dir, "ci.csr")
	writeTestCSR(t, csr, "ci")
	r.ok("sign", "--kind", "client", "--role", "deployer", "--out", filepath.Join(dir, "ci.pem"), csr)
	r.ok("token", "create", "--kind", "client", "--role", "deployer", "--ca-url", "https://ca.example:8443", "carol")
	r.ok("context", "add", "dep", "--host", "tcp://127.0.0.1:2376", "--role", "deployer", "--no-check", "--docker-config", filepath.Join(dir, "docker"))
	roles := map[string]int{}
	for _, e := range listJSON(t, r) {
		roles[e["role"].(string)]++
	}
	if roles["deployer"] != 3 {
		t.Fatalf("roles issued: %v", roles)
	}
	if res := r.run("issue", "client", "eve", "--role", "auditor", "--out", filepath.Join(dir, "eve")); res.code != 1 || !strings.Contains(res.err, `unknown role "auditor"`) {
		t.Fatalf("a role the policy does not define: %+v", res)
	}
}
