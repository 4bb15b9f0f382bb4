package authz

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadPolicyFile(t *testing.T, name string) (*Policy, error) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return LoadPolicy(f)
}

func TestInvalidPoliciesAreRejected(t *testing.T) {
	files, _ := filepath.Glob("testdata/policies/invalid-*.yaml")
	if len(files) == 0 {
		t.Fatal("no invalid policy fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := loadPolicyFile(t, f)
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("err = %v, want ErrPolicy", err)
			}
		})
	}
}

func TestCustomPolicy(t *testing.T) {
	pol, err := loadPolicyFile(t, "testdata/policies/custom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pol.Roles(), ","); got != "admin,deployer,operator,readonly,readonly-base" {
		t.Fatalf("roles = %s", got)
	}
	p := newPKI(t)
	a := newTestAuthorizer(t, p, nil, func(o *Options) { o.Policy = pol })
	dep := p.client(t, "ci", "deployer")
	ro := p.client(t, "rep", "readonly")
	cases := []struct {
		leaf         *testLeaf
		method, uri  string
		body, expect string // expect "" = allow, else message part
	}{
		{dep, "DELETE", "/v1.41/volumes/data", "", "volumes are kept for the backup job"},
		{dep, "POST", "/v1.41/volumes/create", `{"Name":"v"}`, ""},
		{dep, "POST", "/v1.41/containers/create", `{"Image":"x"}`, ""},
		{dep, "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Runtime":"runsc"}}`, "with a custom runtime (--runtime)"},
		{dep, "POST", "/v1.41/containers/create", `{"Image":"x","hostconfig":{"runtime":"runsc"}}`, "custom runtime"},
		{dep, "POST", "/v1.41/containers/create?platform=linux/arm64", `{"Image":"x"}`, "with query.platform set"},
		{dep, "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Privileged":true}}`, "--privileged"},
		{dep, "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Binds":["/srv/shared/app:/app"]}}`, ""}, // allowed_host_paths; missing here, so it resolves to itself
		{dep, "POST", "/v1.41/swarm/init", `{}`, "role deployer may not POST /swarm/init"},
		{ro, "GET", "/v1.41/containers/abc/logs", "", "logs may hold customer data"},
		{ro, "GET", "/v1.41/containers/abc/archive", "", ""}, // the replacement readonly no longer denies it
	}
	for _, c := range cases {
		d := a.Decide(context.Background(), tlsRequest(c.leaf, c.method, c.uri, []byte(c.body)))
		if c.expect == "" && !d.Allow || c.expect != "" && (d.Allow || !strings.Contains(d.Msg, c.expect)) {
			t.Errorf("%s %s %s: allow=%v msg=%q, want %q", c.leaf.cert.Subject.OrganizationalUnit[0], c.method, c.uri, d.Allow, d.Msg, c.expect)
		}
	}
}

func TestAllowedHostPathsResolveSymlinks(t *testing.T) {
	dir := t.TempDir()
	allowed := filepath.Join(dir, "shared")
	if err := os.MkdirAll(filepath.Join(allowed, "app"), 0o700); err != nil {
		t.Fatal(err)
	}
	// What an operator could plant from inside a container that mounts the
	// allowed directory.
	if err := os.Symlink("/", filepath.Join(allowed, "escape")); err != nil {
		t.Fatal(err)
	}
	pol, err := LoadPolicy(strings.NewReader("allowed_host_paths: [" + allowed + "]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := newPKI(t)
	a := newTestAuthorizer(t, p, nil, func(o *Options) { o.Policy = pol })
	op := p.client(t, "op", "operator")
	for _, c := range []struct {
		src   string
		allow bool
	}{
		{allowed, true},
		{allowed + "/app", true},
		{allowed + "/new/dir", true},
		{allowed + "/escape", false},
		{allowed + "/escape/etc", false},
		{allowed + "/../etc", false},
		{allowed + "x", false},
		{"/etc", false},
	} {
		body := `{"Image":"x","HostConfig":{"Binds":["` + c.src + `:/data"],"Mounts":[{"Type":"bind","Source":"` + c.src + `","Target":"/m"}]}}`
		d := a.Decide(context.Background(), tlsRequest(op, "POST", "/containers/create", []byte(body)))
		if d.Allow != c.allow {
			t.Errorf("bind %s: allow=%v msg=%q, want allow=%v", c.src, d.Allow, d.Msg, c.allow)
		}
		vol := `{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"` + c.src + `"}}`
		d = a.Decide(context.Background(), tlsRequest(op, "POST", "/volumes/create", []byte(vol)))
		if d.Allow != c.allow {
			t.Errorf("bind volume %s: allow=%v msg=%q, want allow=%v", c.src, d.Allow, d.Msg, c.allow)
		}
	}
}

func TestBuiltinPolicyIsDocumentedYAML(t *testing.T) {
	pol, err := LoadPolicy(bytes.NewReader(BuiltinPolicyYAML()))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pol.Roles(), ","); got != "admin,operator,readonly" {
		t.Fatalf("roles = %s", got)
	}
	// Every check the code knows is documented in the file users read.
	for _, name := range checkNames() {
		if !bytes.Contains(BuiltinPolicyYAML(), []byte("#   "+name+" ")) {
			t.Errorf("check %s is not documented in builtin-policy.yaml", name)
		}
	}
}

func TestMatchPath(t *testing.T) {
	cases := []struct {
		pat, path string
		want      bool
	}{
		{"/**", "/", true},
		{"/**", "/a/b/c", true},
		{"/containers/*", "/containers/abc", true},
		{"/containers/*", "/containers/abc/start", false},
		{"/containers/*/start", "/containers/abc/start", true},
		{"/images/**/tag", "/images/reg/ns/app/tag", true},
		{"/images/**/tag", "/images/tag", true},
		{"/images/**/tag", "/images/app/push", false},
		{"/exec/**", "/exec", true},
		{"/_ping", "/_ping", true},
		{"/_ping", "/_pingx", false},
	}
	for _, c := range cases {
		if got := matchPath(splitPath(c.pat), splitPath(c.path)); got != c.want {
			t.Errorf("matchPath(%s, %s) = %v", c.pat, c.path, got)
		}
	}
}

// TestAllowedLogDrivers: a policy may let non-admin roles use more log
// drivers; the local ones are always allowed, and bad names are refused.
func TestAllowedLogDrivers(t *testing.T) {
	pol, err := LoadPolicy(strings.NewReader("allowed_log_drivers: [gelf]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := newPKI(t)
	a := newTestAuthorizer(t, p, nil, func(o *Options) { o.Policy = pol })
	op := p.client(t, "op", "operator")
	for driver, allow := range map[string]bool{"gelf": true, "json-file": true, "none": true, "syslog": false, "fluentd": false} {
		body := `{"Image":"x","HostConfig":{"LogConfig":{"Type":"` + driver + `"}}}`
		d := a.Decide(context.Background(), tlsRequest(op, "POST", "/containers/create", []byte(body)))
		if d.Allow != allow {
			t.Errorf("log driver %s: allow=%v msg=%q, want %v", driver, d.Allow, d.Msg, allow)
		}
		if !allow && !strings.Contains(d.Msg, "allowed: json-file, local, journald, none, gelf") {
			t.Errorf("log driver %s: message does not list the allowed drivers: %q", driver, d.Msg)
		}
	}
	for _, bad := range []string{"allowed_log_drivers: [\"\"]\n", "allowed_log_drivers: [\"a b\"]\n", "allowed_log_drivers: [\"x\\ny\"]\n"} {
		if _, err := LoadPolicy(strings.NewReader(bad)); !errors.Is(err, ErrPolicy) {
			t.Errorf("policy %q: %v, want ErrPolicy", bad, err)
		}
	}
}
