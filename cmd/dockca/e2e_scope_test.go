package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/dockerdtest"
)

// TestScopedAccessTwoDaemons is issue 15's test: two real dockerds, each
// with its own plugin instance, one in group staging and one in prod. A
// client scoped to staging reaches staging and is denied at prod with a
// message naming it, its scope and the daemon's groups; an unscoped client
// and a client scoped to both reach both; the stored policy makes prod
// readonly for operators, so an operator scoped to both creates containers
// on staging but only reads on prod. `dockca access --json` lists exactly
// these reachabilities, offline and through the service, and GET
// /v1/access answers the same to an admin certificate only.
func TestScopedAccessTwoDaemons(t *testing.T) {
	dockerdtest.Require(t)
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("group_roles:\n  prod:\n    operator: readonly\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.ok("policy", "set", policy)

	r.ok("issue", "daemon", "127.0.0.1", "--group", "staging", "--out", filepath.Join(dir, "staging"))
	r.ok("issue", "daemon", "127.0.0.2", "--group", "prod", "--out", filepath.Join(dir, "prod"))
	r.ok("issue", "client", "dev", "--role", "operator", "--scope", "staging", "--out", filepath.Join(dir, "dev"))
	r.ok("issue", "client", "ops", "--role", "operator", "--out", filepath.Join(dir, "ops"))
	r.ok("issue", "client", "lead", "--role", "operator", "--scope", "staging", "--scope", "prod", "--out", filepath.Join(dir, "lead"))

	// ls says what each certificate is for, and that ops reaches every daemon.
	ls := r.ok("ls")
	for _, want := range []string{"GROUPS", "staging ", "prod ", "prod,staging", "all "} {
		if !strings.Contains(ls, want) {
			t.Errorf("ls lacks %q:\n%s", want, ls)
		}
	}
	if show := r.ok("show", "ops"); !strings.Contains(show, "Scope:") || !strings.Contains(show, "all daemons") {
		t.Errorf("show ops:\n%s", show)
	}
	// openssl shows the scope.
	if out := opensslOut(t, "x509", "-in", filepath.Join(dir, "lead", "cert.pem"), "-noout", "-ext", "subjectAltName"); !strings.Contains(out, "URI:urn:dockca:scope:prod") ||
		!strings.Contains(out, "URI:urn:dockca:scope:staging") {
		t.Errorf("openssl does not show lead's scope:\n%s", out)
	}

	audit := filepath.Join(dir, "audit-prod.jsonl")
	stagingPlugin := startAuthzPlugin(t, r, "--group", "staging")
	prodPlugin := startAuthzPlugin(t, r, "--group", "prod", "--audit-log", audit)
	start := func(group, host, plugin string) *dockerdtest.Daemon {
		dd := filepath.Join(dir, group)
		d := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, Host: host, CACert: filepath.Join(dd, "ca.pem"),
			Cert: filepath.Join(dd, "server-cert.pem"), Key: filepath.Join(dd, "server-key.pem"),
			Args: []string{"--authorization-plugin=" + plugin}})
		d.ImportBusybox(t, "bb:1")
		return d
	}
	if st := r.ok("authz", "status", "--name", prodPlugin); !strings.Contains(st, "groups:          prod") {
		t.Errorf("authz status does not show the daemon's groups:\n%s", st)
	}
	staging := start("staging", "127.0.0.1", stagingPlugin)
	prod := start("prod", "127.0.0.2", prodPlugin)
	as := func(who string, d *dockerdtest.Daemon, args ...string) (string, error) {
		return dockerTLS(t, d.Addr, filepath.Join(dir, who), args...)
	}
	mustReach := func(who string, d *dockerdtest.Daemon, args ...string) {
		t.Helper()
		if out, err := as(who, d, args...); err != nil {
			t.Fatalf("%s: docker %s on %s: %v\n%s", who, strings.Join(args, " "), d.Addr, err, out)
		}
	}
	mustBeDenied := func(who string, d *dockerdtest.Daemon, want string, args ...string) {
		t.Helper()
		out, err := as(who, d, args...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("%s: docker %s on %s: err %v, want a denial with %q:\n%s", who, strings.Join(args, " "), d.Addr, err, want, out)
		}
	}

	// dev, scoped to staging.
	mustReach("dev", staging, "ps")
	mustReach("dev", staging, "create", "--name", "dev1", "bb:1", "true")
	mustBeDenied("dev", prod, `client "dev"`, "ps")
	mustBeDenied("dev", prod, "has scope staging, which does not include this daemon's groups (prod)", "ps")
	// ops, unscoped: reaches both, readonly on prod by the policy.
	mustReach("ops", staging, "ps")
	mustReach("ops", prod, "ps")
	// lead, scoped to both: creates on staging, only reads on prod.
	mustReach("lead", staging, "ps")
	mustReach("lead", staging, "create", "--name", "lead1", "bb:1", "true")
	mustReach("lead", prod, "ps")
	mustReach("lead", prod, "images")
	mustBeDenied("lead", prod, "role readonly may not POST /containers/create", "create", "--name", "lead2", "bb:1", "true")
	mustBeDenied("ops", prod, "role readonly may not POST /containers/create", "create", "--name", "ops2", "bb:1", "true")

	// The audit line of dev's denial at prod says who, the scope and the rule.
	raw, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	sawScope := false
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e struct {
			User, Decision, Rule string
			Scope                []string
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.User == "dev" && e.Decision == "deny" && e.Rule == "out-of-scope" && slices.Equal(e.Scope, []string{"staging"}) {
			sawScope = true
		}
	}
	if !sawScope {
		t.Errorf("no out-of-scope audit line for dev:\n%s", raw)
	}

	// The access map lists exactly these reachabilities.
	serial := func(name string) string { return strings.TrimSpace(r.ok("show", name, "--format", "{{.Serial}}")) }
	st, pr := serial("127.0.0.1"), serial("127.0.0.2")
	want := []api.AccessEntry{
		{Client: "dev", ClientSerial: serial("dev"), Role: "operator", Daemon: "127.0.0.1", DaemonSerial: st, Groups: []string{"staging"}},
		{Client: "lead", ClientSerial: serial("lead"), Role: "operator", Daemon: "127.0.0.1", DaemonSerial: st, Groups: []string{"staging"}},
		{Client: "lead", ClientSerial: serial("lead"), Role: "readonly", Daemon: "127.0.0.2", DaemonSerial: pr, Groups: []string{"prod"}},
		{Client: "ops", ClientSerial: serial("ops"), Role: "operator", Daemon: "127.0.0.1", DaemonSerial: st, Groups: []string{"staging"}},
		{Client: "ops", ClientSerial: serial("ops"), Role: "readonly", Daemon: "127.0.0.2", DaemonSerial: pr, Groups: []string{"prod"}},
	}
	checkAccess := func(where, out string, want []api.AccessEntry) {
		t.Helper()
		var got []api.AccessEntry
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%s: %v\n%s", where, err, out)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d entries, want %d:\n%s", where, len(got), len(want), out)
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.Client != w.Client || g.ClientSerial != w.ClientSerial || g.Role != w.Role || g.Daemon != w.Daemon ||
				g.DaemonSerial != w.DaemonSerial || !slices.Equal(g.Groups, w.Groups) || g.Expires.IsZero() {
				t.Errorf("%s: entry %d = %+v, want %+v", where, i, g, w)
			}
		}
	}
	offline := r.ok("access", "--json")
	checkAccess("access --json", offline, want)
	checkAccess("access --json --group prod", r.ok("access", "--json", "--group", "prod"), []api.AccessEntry{want[2], want[4]})
	checkAccess("access --json --client dev", r.ok("access", "--json", "--client", "dev"), want[:1])
	if table := r.ok("access"); !strings.Contains(table, "CLIENT") || strings.Count(table, "\n") != 6 {
		t.Errorf("access table:\n%s", table)
	}

	// Through the running service: the same JSON from the admin socket,
	// and from GET /v1/access for an admin certificate only.
	bin := buildDockca(t)
	sp := startServe(t, bin, r.home(), r.env["DOCKCA_PASSWORD"])
	if through := r.ok("access", "--json"); through != offline {
		t.Errorf("access through the service differs:\n%s\nvs offline:\n%s", through, offline)
	}
	r.ok("issue", "client", "boss", "--role", "admin", "--scope", "ops-team", "--out", filepath.Join(dir, "boss"))
	get := func(who string) (int, []byte) {
		t.Helper()
		pool := x509.NewCertPool()
		caPEM, err := os.ReadFile(filepath.Join(dir, "dev", "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(caPEM)
		cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if who != "" {
			cert, err := tls.LoadX509KeyPair(filepath.Join(dir, who, "cert.pem"), filepath.Join(dir, who, "key.pem"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := hc.Get(sp.url + api.PathAccess)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	code, body := get("boss")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/access as admin: %d %s", code, body)
	}
	// boss is scoped to a group no daemon has: the map is unchanged.
	checkAccess("GET /v1/access", string(body), want)
	if cli := r.ok("access", "--json"); !bytes.Equal(bytes.TrimSpace([]byte(cli)), bytes.TrimSpace(body)) {
		t.Errorf("GET /v1/access and access --json differ:\n%s\nvs\n%s", body, cli)
	}
	if code, body := get("dev"); code != http.StatusForbidden || !strings.Contains(string(body), "not an admin client certificate") {
		t.Errorf("GET /v1/access as operator: %d %s", code, body)
	}
	if code, body := get(""); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/access without a certificate: %d %s", code, body)
	}
}

// The gate shares the plugin's engine: with --group it denies a client
// scoped elsewhere before any role rule, with the same message, and lets
// unscoped and in-scope clients through.
func TestGateEnforcesScope(t *testing.T) {
	g := startGate(t, "--group", "prod")
	g.r.ok("issue", "client", "dev", "--role", "admin", "--scope", "staging", "--out", filepath.Join(g.dir, "dev"))
	g.r.ok("issue", "client", "ops", "--role", "operator", "--scope", "prod", "--out", filepath.Join(g.dir, "ops"))
	g.deny(t, "dev", `client "dev"`, "ps")
	g.deny(t, "dev", "has scope staging, which does not include this daemon's groups (prod)", "ps")
	g.allow(t, "ops", "create", "--name", "ops1", "bb:1", "true")
	g.allow(t, "bob", "ps") // unscoped
}
