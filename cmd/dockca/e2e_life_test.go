package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/internal/servetest"
	"github.com/dockca/dockca/pki"
)

// statusOf returns the status `dockca ls` reports for serial (through the
// admin socket).
func statusOf(t *testing.T, s *servetest.Service, serial string) string {
	t.Helper()
	out, e, code := svcRun(t, map[string]string{"DOCKCA_HOME": s.Home}, "show", "--json", serial)
	if code != 0 {
		t.Fatalf("show %s: %s", serial, e)
	}
	var entry struct {
		Status string `json:"status"`
		Reason string `json:"revocation_reason"`
	}
	if err := json.Unmarshal([]byte(out), &entry); err != nil {
		t.Fatalf("show --json %s: %v\n%s", serial, err, out)
	}
	if entry.Reason != "" {
		return entry.Status + " (" + entry.Reason + ")"
	}
	return entry.Status
}

// TestDaemonFromServiceRenews is issue 10's first reproduction: a daemon
// set up from the service records where to renew, so renew --cert-dir
// works, is refused while not due, supersedes (and with --revoke-old
// revokes) its predecessor, and renew --watch checks at start that it can
// renew instead of failing months later. The daemon serves real clients
// with the certificate before and after.
func TestDaemonFromServiceRenews(t *testing.T) {
	dockerdtest.Require(t)
	bin := buildDockca(t)
	svc := servetest.Start(t, bin)
	host := map[string]string{"DOCKCA_HOME": t.TempDir()}

	root := t.TempDir()
	tlsDir := filepath.Join(root, "tls")
	setup := []string{"daemon", "setup", "localhost", "--san", "127.0.0.1", "--listen", "tcp://127.0.0.1:2376",
		"--tls-dir", tlsDir, "--config", filepath.Join(root, "daemon.json"), "--systemd-dir", filepath.Join(root, "systemd"),
		"--ca-url", svc.URL, "--fingerprint", svc.FP}
	setup = append(setup, "--token", svc.Token(t, "--kind", "daemon", "--san", "127.0.0.1", "localhost"))
	if out, e, code := svcRun(t, host, setup...); code != 0 {
		t.Fatalf("remote daemon setup: %s %s", out, e)
	}
	var meta enroll.Meta
	b, err := os.ReadFile(filepath.Join(tlsDir, enroll.FileMeta))
	if err != nil {
		t.Fatalf("daemon setup recorded nothing beside the certificate: %v", err)
	}
	if err := json.Unmarshal(b, &meta); err != nil || meta.CAURL != svc.URL || meta.RootSHA256 != svc.FP || meta.Kind != "daemon" {
		t.Fatalf("%s: %v %+v", enroll.FileMeta, err, meta)
	}
	first := tlsLeaf(t, tlsDir)
	firstSerial := pki.FormatSerial(first.SerialNumber)

	// A real dockerd with that certificate, and a client of the same CA.
	d := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(tlsDir, "ca.pem"),
		Cert: filepath.Join(tlsDir, "server-cert.pem"), Key: filepath.Join(tlsDir, "server-key.pem")})
	clientDir := filepath.Join(t.TempDir(), "client")
	if _, e, code := svcRun(t, host, "enroll", "--ca-url", svc.URL, "--fingerprint", svc.FP, "--cert-dir", clientDir,
		"--token", svc.Token(t, "--kind", "client", "ops")); code != 0 {
		t.Fatalf("enroll client: %s", e)
	}
	dockerEnv := []string{"DOCKER_HOST=tcp://" + d.Addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + clientDir, "DOCKER_CONFIG=" + t.TempDir()}
	if out, err := dockerdtest.Docker(t, dockerEnv, "ps"); err != nil {
		t.Fatalf("docker ps against the daemon set up from the service: %v\n%s", err, out)
	}

	// Not due: nothing changes.
	if out, e, code := svcRun(t, nil, "renew", "--cert-dir", tlsDir); code != 0 || !strings.Contains(out, "Not renewed") || !strings.Contains(out, "--force") {
		t.Fatalf("renew of a fresh certificate: %d %s %s", code, out, e)
	}
	if tlsLeaf(t, tlsDir).SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("renew replaced a certificate that was not due")
	}
	// --within makes it due.
	if out, e, code := svcRun(t, nil, "renew", "--cert-dir", tlsDir, "--within", "365d"); code != 0 || !strings.Contains(out, "Renewed daemon localhost") {
		t.Fatalf("renew --within 365d: %d %s %s", code, out, e)
	}
	second := pki.FormatSerial(tlsLeaf(t, tlsDir).SerialNumber)
	if got := statusOf(t, svc, firstSerial); got != "superseded" {
		t.Fatalf("the renewed certificate's predecessor is %q, want superseded", got)
	}
	if out, _, code := svcRun(t, map[string]string{"DOCKCA_HOME": svc.Home}, "ls", "--status", "superseded", "--json"); code != 0 || !strings.Contains(out, firstSerial) || strings.Contains(out, `"serial": "`+second) {
		t.Fatalf("ls --status superseded:\n%s", out)
	}
	if out, _, _ := svcRun(t, map[string]string{"DOCKCA_HOME": svc.Home}, "show", firstSerial); !strings.Contains(out, "Superseded by:") || !strings.Contains(out, second) {
		t.Fatalf("show of the predecessor:\n%s", out)
	}
	// --force --revoke-old: renewed although not due, predecessor revoked.
	if out, e, code := svcRun(t, nil, "renew", "--cert-dir", tlsDir, "--force", "--revoke-old"); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("renew --force --revoke-old: %d %s %s", code, out, e)
	}
	if got := statusOf(t, svc, second); got != "revoked (superseded)" {
		t.Fatalf("the predecessor after --revoke-old is %q", got)
	}

	// dockerd reads its certificate at start: restarted, it serves the
	// renewed one to the same client.
	d.Stop(t)
	d2 := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(tlsDir, "ca.pem"),
		Cert: filepath.Join(tlsDir, "server-cert.pem"), Key: filepath.Join(tlsDir, "server-key.pem")})
	dockerEnv[0] = "DOCKER_HOST=tcp://" + d2.Addr
	if out, err := dockerdtest.Docker(t, dockerEnv, "ps"); err != nil {
		t.Fatalf("docker ps with the renewed daemon certificate: %v\n%s", err, out)
	}

	// renew --watch checks at start: it runs when it can renew...
	watch := func(extra ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		_, e, code := svcRunCtx(ctx, t, nil, append([]string{"renew", "--watch", "--cert-dir", tlsDir}, extra...)...)
		return e, code
	}
	if e, code := watch(); code != 0 || !strings.Contains(e, "next renewal scheduled") {
		t.Fatalf("renew --watch on a daemon set up from the service: %d\n%s", code, e)
	}
	// ...warns and keeps going while the CA is unreachable...
	dead := "https://127.0.0.1:" + strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1"))
	if e, code := watch("--ca-url", dead); code != 0 || !strings.Contains(e, "cannot be reached") || !strings.Contains(e, "next renewal scheduled") {
		t.Fatalf("renew --watch with the CA unreachable: %d\n%s", code, e)
	}
	// ...and fails at once when it never could: a service of another CA...
	other := servetest.Start(t, bin)
	start := time.Now()
	if e, code := watch("--ca-url", other.URL); code != 1 || !strings.Contains(e, "cannot renew") {
		t.Fatalf("renew --watch against another CA: %d\n%s", code, e)
	}
	// ...or no CA URL recorded (what daemon setup used to leave).
	os.Remove(filepath.Join(tlsDir, enroll.FileMeta))
	if e, code := watch(); code != 1 || !strings.Contains(e, "records no CA URL") {
		t.Fatalf("renew --watch without a recorded CA: %d\n%s", code, e)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("renew --watch took %s to refuse", time.Since(start))
	}
	// A second daemon setup run (same command line, its token already
	// spent and not needed) keeps the certificate and restores the record,
	// so a host set up by an older dockca can renew again.
	if out, e, code := svcRun(t, host, setup...); code != 0 || !strings.Contains(out, "recorded") {
		t.Fatalf("daemon setup rerun: %s %s", out, e)
	}
	if out, e, code := svcRun(t, nil, "renew", "--cert-dir", tlsDir, "--force"); code != 0 {
		t.Fatalf("renew after the record was restored: %s %s", out, e)
	}
	// Revoked: the watcher stops at once.
	if _, e, code := svcRun(t, map[string]string{"DOCKCA_HOME": svc.Home}, "revoke", pki.FormatSerial(tlsLeaf(t, tlsDir).SerialNumber)); code != 0 {
		t.Fatalf("revoke: %s", e)
	}
	if e, code := watch(); code != 1 || !strings.Contains(e, "revoked") {
		t.Fatalf("renew --watch of a revoked certificate: %d\n%s", code, e)
	}
}

// ctxStatus returns the status `dockca context ls --json` reports for
// context name.
func ctxStatus(t *testing.T, vars map[string]string, cfg, name string) (status, problem string) {
	t.Helper()
	out, e, code := svcRun(t, vars, "context", "ls", "--json", "--docker-config", cfg)
	if code != 0 {
		t.Fatalf("context ls: %s", e)
	}
	var infos []struct {
		Name, Status, Problem, Serial string
	}
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("context ls --json: %v\n%s", err, out)
	}
	for _, i := range infos {
		if i.Name == name {
			return i.Status, i.Problem
		}
	}
	t.Fatalf("context %s not listed:\n%s", name, out)
	return "", ""
}

// TestRemoteContextLifecycle is issue 10's second to fourth reproductions
// for a laptop without the CA: remote context add refuses daemons that
// cannot work (another name, another CA, plain HTTP) without spending the
// token; context ls reads revocations from the service's CRL and says
// unknown, never valid, when it cannot; context renew renews only when
// due, supersedes or revokes the old certificate, and refuses a revoked
// one.
func TestRemoteContextLifecycle(t *testing.T) {
	dockerdtest.Require(t)
	bin := buildDockca(t)
	svc := servetest.Start(t, bin)
	admin := map[string]string{"DOCKCA_HOME": svc.Home}
	laptop := map[string]string{"DOCKCA_HOME": t.TempDir()}
	cfg := t.TempDir()

	// Daemons: one of this CA for localhost and 127.0.0.1; one of this CA
	// for another name only; one of another CA; one without TLS.
	enrollDaemon := func(name string, sans ...string) string {
		dir := filepath.Join(dockerdtest.ShortTempDir(t), "tls")
		args := []string{"--kind", "daemon"}
		for _, s := range sans {
			args = append(args, "--san", s)
		}
		if _, e, code := svcRun(t, laptop, "enroll", "--ca-url", svc.URL, "--fingerprint", svc.FP, "--cert-dir", dir,
			"--token", svc.Token(t, append(args, name)...)); code != 0 {
			t.Fatalf("enroll daemon %s: %s", name, e)
		}
		return dir
	}
	tlsOpts := func(dir string) dockerdtest.Options {
		return dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(dir, "ca.pem"),
			Cert: filepath.Join(dir, "server-cert.pem"), Key: filepath.Join(dir, "server-key.pem")}
	}
	good := dockerdtest.Start(t, tlsOpts(enrollDaemon("localhost", "127.0.0.1")))
	otherName := dockerdtest.Start(t, tlsOpts(enrollDaemon("dockerhost-b")))
	otherHome := t.TempDir()
	otherDir := filepath.Join(dockerdtest.ShortTempDir(t), "tls")
	if _, e, code := svcRun(t, map[string]string{"DOCKCA_HOME": otherHome}, "init", "--no-password"); code != 0 {
		t.Fatalf("init another CA: %s", e)
	}
	if _, e, code := svcRun(t, map[string]string{"DOCKCA_HOME": otherHome}, "issue", "daemon", "localhost", "--san", "127.0.0.1", "--out", otherDir); code != 0 {
		t.Fatalf("issue from another CA: %s", e)
	}
	otherCA := dockerdtest.Start(t, tlsOpts(otherDir))
	plain := dockerdtest.Start(t, dockerdtest.Options{})

	tok := svc.Token(t, "--kind", "client", "--role", "operator", "carol")
	add := func(name, addr string, extra ...string) (string, int) {
		args := append([]string{"context", "add", name, "--host", "tcp://" + addr, "--ca-url", svc.URL, "--token", tok,
			"--fingerprint", svc.FP, "--docker-config", cfg}, extra...)
		_, e, code := svcRun(t, laptop, args...)
		return e, code
	}
	_, goodPort, _ := strings.Cut(good.Addr, ":")
	_, otherNamePort, _ := strings.Cut(otherName.Addr, ":")
	for _, c := range []struct{ what, addr, want string }{
		{"a daemon of another name", "localhost:" + otherNamePort, "not localhost"},
		{"a daemon of another CA", otherCA.Addr, "not from this CA"},
		{"a plain-HTTP daemon", plain.Addr, "does not speak TLS"},
		{"nothing listening", "127.0.0.1:" + strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1")), "does not accept connections"},
	} {
		e, code := add("carol", c.addr)
		if code != 1 || !strings.Contains(e, c.want) || !strings.Contains(e, "the token was not used") {
			t.Errorf("remote context add to %s: exit %d: %s", c.what, code, e)
		}
		t.Logf("%s: %s", c.what, strings.TrimSpace(e))
	}
	out, _, _ := svcRun(t, admin, "token", "ls", "--json")
	var toks []struct{ Name, Status string }
	json.Unmarshal([]byte(out), &toks)
	for _, tk := range toks {
		if tk.Name == "carol" && tk.Status != "outstanding" {
			t.Fatalf("a refused context add spent the token:\n%s", out)
		}
	}
	// The same token still works, for the daemon that is right (by name).
	if e, code := add("carol", "localhost:"+goodPort); code != 0 {
		t.Fatalf("remote context add to the right daemon: %s", e)
	}
	carolEnv := []string{"DOCKER_CONFIG=" + cfg}
	if out, err := dockerdtest.Docker(t, carolEnv, "--context", "carol", "ps"); err != nil {
		t.Fatalf("docker --context carol ps: %v\n%s", err, out)
	}
	if out, _ := dockerdtest.Docker(t, carolEnv, "context", "inspect", "carol"); !strings.Contains(out, svc.FP) || !strings.Contains(out, svc.URL) {
		t.Fatalf("the context does not record the CA URL and root fingerprint:\n%s", out)
	}
	// --no-check skips the check (a context prepared ahead of its daemon).
	if e, code := add("carol-plain", plain.Addr, "--no-check"); code != 1 || !strings.Contains(e, "already been used") {
		t.Fatalf("--no-check with a spent token: %d %s", code, e)
	}
	tok = svc.Token(t, "--kind", "client", "--role", "readonly", "carol-later")
	if e, code := add("carol-later", plain.Addr, "--no-check"); code != 0 {
		t.Fatalf("remote context add --no-check: %s", e)
	}

	// context ls consults the CRL.
	if st, p := ctxStatus(t, laptop, cfg, "carol"); st != "valid" {
		t.Fatalf("carol: %s %s", st, p)
	}
	// Renewal only when due; --force supersedes the old certificate.
	first := contextSerial(t, laptop, cfg, "carol")
	if out, e, code := svcRun(t, laptop, "context", "renew", "carol", "--docker-config", cfg); code != 0 || !strings.Contains(out, "not due") {
		t.Fatalf("context renew of a fresh certificate: %d %s %s", code, out, e)
	}
	if contextSerial(t, laptop, cfg, "carol") != first {
		t.Fatal("context renew replaced a certificate that was not due")
	}
	if out, e, code := svcRun(t, laptop, "context", "renew", "carol", "--force", "--docker-config", cfg); code != 0 || !strings.Contains(out, "renewed") {
		t.Fatalf("context renew --force: %d %s %s", code, out, e)
	}
	second := contextSerial(t, laptop, cfg, "carol")
	if got := statusOf(t, svc, first); got != "superseded" {
		t.Fatalf("the renewed context's old certificate is %q, want superseded", got)
	}
	if out, e, code := svcRun(t, laptop, "context", "renew", "carol", "--within", "90d", "--revoke-old", "--docker-config", cfg); code != 0 || !strings.Contains(out, "revoked the old certificate") {
		t.Fatalf("context renew --within 90d --revoke-old: %d %s %s", code, out, e)
	}
	if got := statusOf(t, svc, second); got != "revoked (superseded)" {
		t.Fatalf("the old certificate after --revoke-old is %q", got)
	}
	if out, err := dockerdtest.Docker(t, carolEnv, "--context", "carol", "ps"); err != nil {
		t.Fatalf("docker --context carol ps after renewals: %v\n%s", err, out)
	}

	// The admin revokes carol's current certificate: the laptop sees it.
	third := contextSerial(t, laptop, cfg, "carol")
	if _, e, code := svcRun(t, admin, "revoke", third); code != 0 {
		t.Fatalf("revoke: %s", e)
	}
	if st, p := ctxStatus(t, laptop, cfg, "carol"); st != "revoked" {
		t.Fatalf("carol after revocation: %s %s", st, p)
	}
	if out, e, code := svcRun(t, laptop, "context", "renew", "carol", "--force", "--docker-config", cfg); code != 1 || !strings.Contains(e, "was revoked") {
		t.Fatalf("context renew of a revoked context: %d %s %s", code, out, e)
	}

	// The service goes away: never valid. The revocation seen before is
	// still shown from the kept CRL.
	svc.Stop(t)
	if st, p := ctxStatus(t, laptop, cfg, "carol-later"); st != "unknown" || !strings.Contains(p, "revocation status unknown") {
		t.Fatalf("carol-later with the service down: %s %s", st, p)
	}
	if st, p := ctxStatus(t, laptop, cfg, "carol"); st != "revoked" {
		t.Fatalf("carol with the service down: %s %s", st, p)
	}
	if out, _, _ := svcRun(t, laptop, "context", "ls", "--docker-config", cfg); !strings.Contains(out, "unknown") {
		t.Fatalf("context ls table:\n%s", out)
	}
}

// contextSerial is the serial of the certificate context name presents.
func contextSerial(t *testing.T, vars map[string]string, cfg, name string) string {
	t.Helper()
	out, _, _ := svcRun(t, vars, "context", "ls", "--json", "--docker-config", cfg)
	var infos []struct{ Name, Serial string }
	json.Unmarshal([]byte(out), &infos)
	for _, i := range infos {
		if i.Name == name {
			return i.Serial
		}
	}
	t.Fatalf("context %s not listed:\n%s", name, out)
	return ""
}

// TestLocalContextRenewSupersedes: at the local CA too, context renew
// renews only when due, records the predecessor (superseded in ls and
// show) and with --revoke-old revokes it; three renewals leave one valid
// row, not four (issue 10's "renewals pile up").
func TestLocalContextRenewSupersedes(t *testing.T) {
	vars := map[string]string{"DOCKCA_HOME": t.TempDir()}
	cfg := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		out, e, code := svcRun(t, vars, args...)
		if code != 0 {
			t.Fatalf("%v: %s %s", args, out, e)
		}
		return out
	}
	run("init", "--no-password")
	run("context", "add", "prod", "--host", "tcp://127.0.0.1:2376", "--no-check", "--docker-config", cfg)
	first := contextSerial(t, vars, cfg, "prod")
	if out := run("context", "renew", "prod", "--docker-config", cfg); !strings.Contains(out, "not due") {
		t.Fatalf("context renew of a fresh certificate:\n%s", out)
	}
	run("context", "renew", "prod", "--force", "--docker-config", cfg)
	run("context", "renew", "prod", "--within", "30d", "--docker-config", cfg)
	third := contextSerial(t, vars, cfg, "prod")
	run("context", "renew", "--all", "--force", "--revoke-old", "--docker-config", cfg)
	last := contextSerial(t, vars, cfg, "prod")

	var rows []struct{ Serial, Status, Revocation_reason string }
	json.Unmarshal([]byte(run("ls", "--json")), &rows)
	count := map[string]int{}
	for _, r := range rows {
		count[r.Status]++
		switch r.Serial {
		case last:
			if r.Status != "valid" {
				t.Errorf("the current certificate is %s", r.Status)
			}
		case third:
			if r.Status != "revoked" || r.Revocation_reason != "superseded" {
				t.Errorf("the certificate --revoke-old replaced is %s (%s)", r.Status, r.Revocation_reason)
			}
		}
	}
	if len(rows) != 4 || count["valid"] != 1 || count["superseded"] != 2 || count["revoked"] != 1 {
		t.Fatalf("ls after three renewals: %v", rows)
	}
	if out := run("ls", "--status", "superseded"); !strings.Contains(out, first) || strings.Contains(out, last) {
		t.Fatalf("ls --status superseded:\n%s", out)
	}
	if out := run("show", first); !strings.Contains(out, "superseded") || !strings.Contains(out, "Superseded by:") {
		t.Fatalf("show of the first certificate:\n%s", out)
	}
}
