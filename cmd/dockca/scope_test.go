package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/internal/golden"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// groupsOfName reads the groups ls records for the valid certificate of
// name.
func groupsOfName(t *testing.T, r *cliRunner, name string) []string {
	t.Helper()
	var entries []struct {
		Name      string
		Status    string
		Groups    []string
		AllGroups bool `json:"all_groups"`
	}
	if err := json.Unmarshal([]byte(r.ok("ls", "--json")), &entries); err != nil {
		t.Fatal(err)
	}
	for _, e := range slices.Backward(entries) {
		if e.Name == name && e.Status == "valid" {
			return e.Groups
		}
	}
	t.Fatalf("no valid certificate of %s", name)
	return nil
}

func leafFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := tlsbundle.Leaf(b)
	if err != nil {
		t.Fatal(err)
	}
	return append(pki.ScopeOf(leaf), pki.GroupsOf(leaf)...)
}

// --scope and --group on every command that issues: sign, context add
// (kept by context renew), daemon setup (a certificate for other groups is
// replaced; the gate's unit enforces them), authz install, and tokens,
// whose certificates get the token's groups at the service.
func TestScopeOnEveryIssuingCommand(t *testing.T) {
	requireOpenSSL(t)
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()

	// sign: --scope for a client CSR, --group for a daemon CSR.
	key := filepath.Join(dir, "k.pem")
	opensslOut(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
	csr := filepath.Join(dir, "c.csr")
	opensslOut(t, "req", "-new", "-key", key, "-subj", "/CN=ci-bot", "-out", csr)
	r.ok("sign", "--kind", "client", "--role", "readonly", "--scope", "staging", "--out", filepath.Join(dir, "ci.pem"), csr)
	if out := opensslOut(t, "x509", "-in", filepath.Join(dir, "ci.pem"), "-noout", "-ext", "subjectAltName"); !strings.Contains(out, "URI:urn:dockca:scope:staging") {
		t.Errorf("signed client lacks its scope:\n%s", out)
	}
	dcsr := filepath.Join(dir, "d.csr")
	opensslOut(t, "req", "-new", "-key", key, "-subj", "/CN=host9.example", "-out", dcsr)
	r.ok("sign", "--kind", "daemon", "--group", "prod", "--out", filepath.Join(dir, "d.pem"), dcsr)
	if got := groupsOfName(t, r, "host9.example"); !slices.Equal(got, []string{"prod"}) {
		t.Errorf("signed daemon groups = %v", got)
	}
	for _, bad := range [][]string{
		{"sign", "--kind", "client", "--group", "prod", csr},
		{"sign", "--kind", "daemon", "--scope", "prod", dcsr},
		{"issue", "client", "x", "--scope", "Prod"},
		{"issue", "daemon", "h.example", "--group", "a b"},
		{"token", "create", "--kind", "revoke", "--scope", "prod", "0a1b2c3d"},
		{"access", "--group", "NO"},
	} {
		if res := r.run(bad...); res.code != 2 || strings.Count(strings.TrimSpace(res.err), "\n") != 0 {
			t.Errorf("dockca %s: exit %d, stderr %q; want one line and exit 2", strings.Join(bad, " "), res.code, res.err)
		}
	}

	// context add --scope, and context renew keeps it.
	cfg := t.TempDir()
	r.ok("context", "add", "laptop", "--host", "tcp://127.0.0.1:2376", "--role", "operator", "--scope", "staging", "--no-check", "--docker-config", cfg)
	if got := groupsOfName(t, r, "laptop"); !slices.Equal(got, []string{"staging"}) {
		t.Errorf("context add --scope: groups %v", got)
	}
	r.ok("context", "renew", "laptop", "--docker-config", cfg)
	if got := groupsOfName(t, r, "laptop"); !slices.Equal(got, []string{"staging"}) {
		t.Errorf("after context renew: groups %v", got)
	}

	// daemon setup --group, with the gate: the certificate carries the
	// group and the gate's unit enforces it; another group replaces the
	// certificate.
	etc := t.TempDir()
	setup := func(group string) string {
		return r.ok("daemon", "setup", "dockerhost", "--san", "127.0.0.1", "--group", group, "--gate", "--listen", "tcp://127.0.0.1:2376",
			"--tls-dir", filepath.Join(etc, "tls"), "--config", filepath.Join(etc, "daemon.json"),
			"--systemd-dir", filepath.Join(etc, "dropin"), "--gate-systemd-dir", filepath.Join(etc, "units"))
	}
	setup("prod")
	if got := leafFile(t, filepath.Join(etc, "tls", "server-cert.pem")); !slices.Equal(got, []string{"prod"}) {
		t.Errorf("daemon setup --group prod: certificate groups %v", got)
	}
	unit, err := os.ReadFile(filepath.Join(etc, "units", "dockca-gate.service"))
	if err != nil || !strings.Contains(string(unit), "--group prod") {
		t.Errorf("gate unit lacks --group prod (%v):\n%s", err, unit)
	}
	before, _ := os.ReadFile(filepath.Join(etc, "tls", "server-cert.pem"))
	setup("prod")
	if after, _ := os.ReadFile(filepath.Join(etc, "tls", "server-cert.pem")); string(after) != string(before) {
		t.Error("a second daemon setup with the same group replaced the certificate")
	}
	out := setup("staging")
	if got := leafFile(t, filepath.Join(etc, "tls", "server-cert.pem")); !slices.Equal(got, []string{"staging"}) {
		t.Errorf("daemon setup --group staging after prod: certificate groups %v\n%s", got, out)
	}
	if !strings.Contains(out, `for groups "prod", not "staging"`) {
		t.Errorf("daemon setup does not say why it reissued:\n%s", out)
	}

	// authz install --group writes it into the plugin's unit.
	units := t.TempDir()
	r.ok("authz", "install", "--config", filepath.Join(units, "daemon.json"), "--systemd-dir", units, "--group", "prod", "--group", "edge")
	if unit, err := os.ReadFile(filepath.Join(units, "dockca-authz.service")); err != nil || !strings.Contains(string(unit), "--group edge --group prod") {
		t.Errorf("authz unit lacks the groups (%v):\n%s", err, unit)
	}

	// Tokens carry the scope or the groups to the service.
	dockerdtest.RequireCommand(t, "openssl")
	bin := buildDockca(t)
	sp := startServe(t, bin, r.home(), r.env["DOCKCA_PASSWORD"])
	tok := strings.TrimSpace(r.ok("token", "create", "--kind", "client", "--role", "readonly", "--scope", "prod", "--scope", "staging", "remote-dev"))
	if ls := r.ok("token", "ls", "--json"); !strings.Contains(ls, `"prod"`) {
		t.Errorf("token ls lacks the scope:\n%s", ls)
	}
	rc := &cliRunner{t: t, env: map[string]string{"DOCKCA_HOME": t.TempDir(), "HOME": t.TempDir()}}
	if res := rc.run("context", "add", "remote-dev", "--host", "tcp://127.0.0.1:2376", "--no-check", "--ca-url", sp.url, "--token", tok,
		"--fingerprint", sp.fp, "--scope", "prod", "--docker-config", t.TempDir()); res.code != 1 || !strings.Contains(res.err, `the token is for scope "prod,staging", not "prod"`) {
		t.Errorf("context add with another scope than the token's: %d %s", res.code, res.err)
	}
	rc.ok("context", "add", "remote-dev", "--host", "tcp://127.0.0.1:2376", "--no-check", "--ca-url", sp.url, "--token", tok,
		"--fingerprint", sp.fp, "--docker-config", t.TempDir())
	if got := groupsOfName(t, r, "remote-dev"); !slices.Equal(got, []string{"prod", "staging"}) {
		t.Errorf("enrolled with a scoped token: groups %v", got)
	}
	dtok := strings.TrimSpace(r.ok("token", "create", "--kind", "daemon", "--group", "edge", "--san", "127.0.0.1", "edgehost"))
	retc := t.TempDir()
	rc.ok("daemon", "setup", "edgehost", "--san", "127.0.0.1", "--ca-url", sp.url, "--token", dtok, "--fingerprint", sp.fp,
		"--tls-dir", filepath.Join(retc, "tls"), "--config", filepath.Join(retc, "daemon.json"), "--systemd-dir", filepath.Join(retc, "dropin"))
	if got := leafFile(t, filepath.Join(retc, "tls", "server-cert.pem")); !slices.Equal(got, []string{"edge"}) {
		t.Errorf("daemon setup with a grouped token: certificate groups %v", got)
	}
}

// The tables of ls (with groups and scopes) and access, on fixed rows,
// against golden files.
func TestScopeTablesGolden(t *testing.T) {
	at := time.Date(2026, 12, 1, 8, 30, 0, 0, time.UTC)
	certs := ca.Entries([]*store.Certificate{
		{Serial: "0a1b", Name: "dev", Kind: pki.KindClient, Role: "operator", Groups: []string{"staging"}, NotAfter: at.AddDate(0, 0, 30)},
		{Serial: "0c1d", Name: "ops", Kind: pki.KindClient, Role: "operator", NotAfter: at.AddDate(0, 0, 30)},
		{Serial: "4e5f", Name: "prod1.example", Kind: pki.KindDaemon, Groups: []string{"prod"}, NotAfter: at.AddDate(0, 0, 90)},
		{Serial: "6a7b", Name: "bare.example", Kind: pki.KindDaemon, NotAfter: at.AddDate(0, 0, 90)},
	}, at, false)
	var b bytes.Buffer
	if err := ca.WriteList(&b, certs, false); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "ls-groups.golden", b.Bytes())

	entries := []api.AccessEntry{
		{Client: "dev", ClientSerial: "0a1b", Role: "operator", Daemon: "staging1.example", DaemonSerial: "9f00", Groups: []string{"staging"}, Expires: at.AddDate(0, 0, 3)},
		{Client: "ops", ClientSerial: "0c1d", Role: "readonly", Daemon: "prod1.example", DaemonSerial: "4e5f", Groups: []string{"prod"}, Expires: at.AddDate(0, 0, 30)},
		{Client: "ops", ClientSerial: "0c1d", Role: "operator", Daemon: "bare.example", DaemonSerial: "6a7b", Groups: []string{}, Expires: at.AddDate(0, 0, 30)},
	}
	for name, asJSON := range map[string]bool{"access-table.golden": false, "access-json.golden": true} {
		b.Reset()
		if err := writeAccess(&b, entries, asJSON, at); err != nil {
			t.Fatal(err)
		}
		golden.Assert(t, name, b.Bytes())
	}
	b.Reset()
	if err := writeAccess(&b, nil, true, at); err != nil || b.String() != "[]\n" {
		t.Errorf("an empty map as JSON: %q %v", b.String(), err)
	}
}
