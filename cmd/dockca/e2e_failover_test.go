package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/contexts"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/internal/servetest"
	"github.com/dockca/dockca/store"
)

// replicaOf starts a second dockca serve on a copy of s's database (taken
// with `dockca backup` through s's admin socket) listening on listen. It
// stands in for a second replica of the same CA: several replicas on one
// database need the etcd store, which is not there yet, and a copy has the
// same root, intermediate and token key, so one fingerprint pins both and
// a token minted before the copy is unspent in both. Certificates issued
// after the copy are known to s only.
func replicaOf(t *testing.T, s *servetest.Service, listen string) *servetest.Service {
	t.Helper()
	home := filepath.Join(dockerdtest.ShortTempDir(t), "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, e, code := svcRun(t, map[string]string{"DOCKCA_HOME": s.Home}, "backup", store.Path(home)); code != 0 {
		t.Fatalf("backup: %s", e)
	}
	return servetest.StartAt(t, s.Bin, home, listen)
}

// serviceCertOf issues a service certificate for 127.0.0.1 from a copy of
// s's database, for the test's own stand-in servers.
func serviceCertOf(t *testing.T, s *servetest.Service) tls.Certificate {
	t.Helper()
	home := t.TempDir()
	if _, e, code := svcRun(t, map[string]string{"DOCKCA_HOME": s.Home}, "backup", store.Path(home)); code != 0 {
		t.Fatalf("backup: %s", e)
	}
	ctx := context.Background()
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := ca.Open(ctx, st, ca.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	iss, err := a.IssueService(ctx, []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := iss.KeyPEM()
	pair, err := tls.X509KeyPair(iss.ChainPEM(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// requests counts the requests s logged on route.
func requests(s *servetest.Service, route string) int {
	return strings.Count(s.Logs(), `"route":"`+route+`"`)
}

// TestFailoverAcrossReplicas is the client side of issue 12 §3: --ca-url
// takes several URLs and every command that talks to the service fails
// over, from the flag and from what it recorded.
func TestFailoverAcrossReplicas(t *testing.T) {
	bin := buildDockca(t)
	a := servetest.Start(t, bin)
	dead := "https://127.0.0.1:" + strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1"))
	portB := dockerdtest.FreePort(t, "127.0.0.1")
	urlB := "https://127.0.0.1:" + strconv.Itoa(portB)
	list := dead + "," + a.URL + "," + urlB // B starts later, on a copy
	host := map[string]string{"DOCKCA_HOME": t.TempDir()}

	// enroll with a dead first URL (B not started yet is dead too).
	dir := filepath.Join(t.TempDir(), "tls")
	start := time.Now()
	if out, e, code := svcRun(t, host, "enroll", "--ca-url", list, "--fingerprint", a.FP, "--cert-dir", dir,
		"--token", a.Token(t, "--kind", "daemon", "--san", "127.0.0.1", "localhost")); code != 0 {
		t.Fatalf("enroll past a dead URL: %d %s %s", code, out, e)
	}
	// A refused connection costs nothing like the request timeout.
	if d := time.Since(start); d > enroll.ConnectTimeout*3 {
		t.Fatalf("enroll past a dead URL took %s", d)
	}
	var meta enroll.Meta
	b, err := os.ReadFile(filepath.Join(dir, enroll.FileMeta))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil || meta.CAURL != dead || !reflect.DeepEqual(meta.CAURLs, []string{dead, a.URL, urlB}) {
		t.Fatalf("%s records %v:\n%s", enroll.FileMeta, err, b)
	}

	// A laptop adds a context with the same list.
	laptop := map[string]string{"DOCKCA_HOME": t.TempDir()}
	cfg := t.TempDir()
	if out, e, code := svcRun(t, laptop, "context", "add", "ops", "--host", "tcp://127.0.0.1:2376", "--ca-url", list,
		"--token", a.Token(t, "--kind", "client", "ops"), "--fingerprint", a.FP, "--docker-config", cfg, "--no-check"); code != 0 {
		t.Fatalf("context add past a dead URL: %d %s %s", code, out, e)
	}
	var marker struct {
		Metadata struct {
			Dockca contexts.Marker `json:"dockca"`
		}
	}
	metas, _ := filepath.Glob(filepath.Join(cfg, "contexts", "meta", "*", "meta.json"))
	if len(metas) != 1 {
		t.Fatalf("context metadata files: %v", metas)
	}
	if mb, err := os.ReadFile(metas[0]); err != nil || json.Unmarshal(mb, &marker) != nil {
		t.Fatalf("context metadata: %v", err)
	}
	if m := marker.Metadata.Dockca; m.CAURL != dead || !reflect.DeepEqual(m.CAURLs, []string{dead, a.URL, urlB}) {
		t.Fatalf("context marker records %+v", marker.Metadata)
	}

	// daemon setup records the list beside the daemon certificate.
	root := t.TempDir()
	tlsDir := filepath.Join(root, "tls")
	if out, e, code := svcRun(t, host, "daemon", "setup", "build1", "--listen", "tcp://127.0.0.1:2376",
		"--tls-dir", tlsDir, "--config", filepath.Join(root, "daemon.json"), "--systemd-dir", filepath.Join(root, "systemd"),
		"--ca-url", list, "--fingerprint", a.FP, "--token", a.Token(t, "--kind", "daemon", "build1")); code != 0 {
		t.Fatalf("daemon setup past a dead URL: %d %s %s", code, out, e)
	}
	if b, err := os.ReadFile(filepath.Join(tlsDir, enroll.FileMeta)); err != nil || !strings.Contains(string(b), `"ca_urls": [`) || !strings.Contains(string(b), urlB) {
		t.Fatalf("daemon setup recorded %v:\n%s", err, b)
	}

	// A token minted now is in the copy too, unspent there.
	spent := a.Token(t, "--kind", "client", "spent")
	b2 := replicaOf(t, a, "127.0.0.1:"+strconv.Itoa(portB))
	if b2.URL != urlB {
		t.Fatalf("replica URL %s, want %s", b2.URL, urlB)
	}

	// 4xx is the CA's answer: the token spent at A is not tried at B.
	if _, e, code := svcRun(t, host, "enroll", "--ca-url", a.URL, "--fingerprint", a.FP, "--cert-dir", t.TempDir(), "--token", spent); code != 0 {
		t.Fatalf("enroll at A: %s", e)
	}
	_, e, code := svcRun(t, host, "enroll", "--ca-url", a.URL+","+urlB, "--fingerprint", a.FP, "--cert-dir", t.TempDir(), "--token", spent)
	if code != 1 || !strings.Contains(e, "already been used") || !strings.Contains(e, "mint a new token") {
		t.Fatalf("a used token: %d %s", code, e)
	}
	if n := requests(b2, "sign"); n != 0 {
		t.Fatalf("replica B saw %d sign requests for a token A had refused:\n%s", n, b2.Logs())
	}

	// A goes away. Everything recorded with the list carries on at B, each
	// in a fresh process, so nothing is remembered from before.
	a.Stop(t)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "DOCKCA_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := run("renew", "--cert-dir", dir, "--force"); code != 0 || !strings.Contains(out, "Renewed daemon localhost") {
		t.Fatalf("renew --cert-dir with A down: %d %s", code, out)
	}
	if requests(b2, "renew") != 1 {
		t.Fatalf("replica B did not renew:\n%s", b2.Logs())
	}
	if out, code := run("context", "ls", "--docker-config", cfg, "--format", "{{.Name}} {{.Status}}"); code != 0 || strings.TrimSpace(out) != "ops valid" {
		t.Fatalf("context ls (the CRL from B) with A down: %d %s", code, out)
	}
	if out, code := run("context", "renew", "--force", "--docker-config", cfg, "ops"); code != 0 {
		t.Fatalf("context renew with A down: %d %s", code, out)
	}
	if requests(b2, "renew") != 2 {
		t.Fatalf("replica B did not renew the context:\n%s", b2.Logs())
	}
	// renew --watch checks at start that it can renew: at B.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, e, code = svcRunCtx(ctx, t, nil, "renew", "--watch", "--cert-dir", dir)
	if code != 0 || strings.Contains(e, "cannot be reached") || !strings.Contains(e, "next renewal scheduled") {
		t.Fatalf("renew --watch with A down: %d %s", code, e)
	}

	// A replica answering 503 is passed over (a tiny HTTPS server with a
	// service certificate of the same CA).
	busy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
	}))
	busy.TLS = &tls.Config{Certificates: []tls.Certificate{serviceCertOf(t, b2)}}
	busy.StartTLS()
	t.Cleanup(busy.Close)
	if out, code := run("enroll", "--ca-url", busy.URL+","+urlB, "--fingerprint", b2.FP, "--cert-dir", t.TempDir(),
		"--token", b2.Token(t, "--kind", "client", "late")); code != 0 {
		t.Fatalf("enroll past a 503: %d %s", code, out)
	}
}

// The plugin in remote mode fetches its CRL past a dead URL and reports
// it fresh.
func TestAuthzRemoteFailover(t *testing.T) {
	bin := buildDockca(t)
	svc := servetest.Start(t, bin)
	dead := "https://127.0.0.1:" + strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1"))
	rr := &cliRunner{t: t, env: map[string]string{"DOCKCA_HOME": t.TempDir(), "HOME": t.TempDir()}}
	name := startAuthzPlugin(t, rr, "--ca-url", dead+","+svc.URL, "--fingerprint", svc.FP)
	st := rr.run("authz", "status", "--name", name, "--json")
	var status struct {
		Revocation struct {
			Mode   string `json:"mode"`
			Source string `json:"source"`
			Stale  bool   `json:"stale"`
		} `json:"revocation"`
	}
	if err := json.Unmarshal([]byte(st.out), &status); err != nil || st.code != 0 {
		t.Fatalf("authz status: %d %v %s %s", st.code, err, st.out, st.err)
	}
	if r := status.Revocation; r.Mode != "remote" || r.Stale || !strings.Contains(r.Source, svc.URL) || !strings.Contains(r.Source, dead) {
		t.Fatalf("remote plugin past a dead URL: %s", st.out)
	}
}

// Every entry of --ca-url (and DOCKCA_CA_URL) is checked when the flags
// are read: one bad, empty or repeated entry is a usage error quoting it,
// and nothing is contacted or written.
func TestCAURLListUsage(t *testing.T) {
	good := "https://127.0.0.1:1"
	cases := []struct {
		list, quoted string
	}{
		{good + ",http://127.0.0.1:2", `"http://127.0.0.1:2"`},
		{good + ",," + "https://127.0.0.1:2", `empty entry`},
		{good + ",", `empty entry`},
		{good + "," + good + "/", `"https://127.0.0.1:1/" is listed twice`},
		{"https://ca.example:8443/path", `"https://ca.example:8443/path"`},
	}
	fp := strings.Repeat("ab", 32)
	for _, c := range cases {
		dir := filepath.Join(t.TempDir(), "d")
		for _, args := range [][]string{
			{"enroll", "--ca-url", c.list, "--token", "x.y.z", "--fingerprint", fp, "--cert-dir", dir},
			{"renew", "--cert-dir", dir, "--ca-url", c.list},
			{"context", "add", "x", "--host", "tcp://127.0.0.1:2376", "--ca-url", c.list, "--token", "x.y.z", "--docker-config", dir},
			{"daemon", "setup", "h", "--tls-dir", dir, "--ca-url", c.list, "--token", "x.y.z", "--dry-run"},
			{"authz", "--socket", filepath.Join(dir, "s.sock"), "--ca-url", c.list, "--fingerprint", fp},
			{"gate", "--cert-dir", dir, "--ca-url", c.list, "--fingerprint", fp},
			{"audit", "--ca-url", c.list, "--fingerprint", fp, "127.0.0.1:1"},
		} {
			_, e, code := svcRun(t, map[string]string{"DOCKCA_HOME": t.TempDir()}, args...)
			if code != 2 || !strings.Contains(e, "--ca-url") || !strings.Contains(e, c.quoted) {
				t.Errorf("%s with --ca-url %q: exit %d, %s", args[0], c.list, code, e)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("%s with --ca-url %q wrote %s", args[0], c.list, dir)
			}
		}
	}
	// DOCKCA_CA_URL is read the same way (urfave reads it from the process
	// environment, so this runs the binary).
	bin := buildDockca(t)
	cmd := exec.Command(bin, "renew", "--cert-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "DOCKCA_CA_URL="+good+",,"+good)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "empty entry") {
		t.Fatalf("DOCKCA_CA_URL with an empty entry: %v %s", err, out)
	}
}

// authz install writes the checked list into the plugin's unit, as the
// plugin's own --ca-url takes it.
func TestAuthzInstallWritesCAURLList(t *testing.T) {
	r := newCLI(t)
	units := t.TempDir()
	fp := strings.Repeat("ab", 32)
	r.ok("authz", "install", "--config", filepath.Join(units, "daemon.json"), "--systemd-dir", units,
		"--ca-url", " https://ca1.example:8443 , https://ca2.example:8443/", "--fingerprint", fp)
	unit, err := os.ReadFile(filepath.Join(units, "dockca-authz.service"))
	if err != nil || !strings.Contains(string(unit), "--ca-url https://ca1.example:8443,https://ca2.example:8443 --fingerprint "+fp) {
		t.Fatalf("authz unit (%v):\n%s", err, unit)
	}
	res := r.run("authz", "install", "--config", filepath.Join(units, "daemon.json"), "--systemd-dir", units,
		"--ca-url", "https://ca1.example:8443,https://ca1.example:8443", "--fingerprint", fp)
	if res.code != 2 || !strings.Contains(res.err, "listed twice") {
		t.Fatalf("authz install with a repeated URL: %d %s", res.code, res.err)
	}
}
