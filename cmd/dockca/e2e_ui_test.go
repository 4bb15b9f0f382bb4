package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// chromiumFlags run Debian's chromium headless, isolated and quiet: no
// network of its own beyond the page it is given.
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"}

func chromium(t *testing.T, args ...string) string {
	t.Helper()
	bin := dockerdtest.RequireCommand(t, "chromium")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	full := append(append(append([]string{}, chromiumFlags...), "--user-data-dir="+t.TempDir()), args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// adminProxy serves the service on a loopback plain-HTTP port and presents
// the client certificate in certDir to it, the way a browser with that
// certificate would: chromium loads the page through it.
func adminProxy(t *testing.T, serviceURL, certDir string) string {
	t.Helper()
	u, err := url.Parse(serviceURL)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(certDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestUIInHeadlessChromium: the /ui/ page, loaded by a real browser with an
// admin certificate, shows the access map, the certificates expiring in
// the next 30 days with their timeline, and recent revocations; without an
// admin certificate it is refused. DOCKCA_UI_SCREENSHOT=1 also writes the
// screenshot to docs/ui.png.
func TestUIInHeadlessChromium(t *testing.T) {
	dockerdtest.RequireCommand(t, "chromium")
	r := newCLI(t)
	initCA(t, r)
	bin := buildDockca(t)
	sp := startServe(t, bin, r.home(), r.env["DOCKCA_PASSWORD"])
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policy, []byte("group_roles:\n  prod:\n    operator: readonly\n"), 0o600)
	r.ok("policy", "set", policy)
	r.ok("issue", "daemon", "staging1.example", "--group", "staging", "--out", filepath.Join(dir, "s1"))
	r.ok("issue", "daemon", "prod1.example", "--group", "prod", "--ttl", "20d", "--out", filepath.Join(dir, "p1"))
	r.ok("issue", "client", "dev", "--role", "operator", "--scope", "staging", "--ttl", "5d", "--out", filepath.Join(dir, "dev"))
	r.ok("issue", "client", "lead", "--role", "operator", "--scope", "staging", "--scope", "prod", "--out", filepath.Join(dir, "lead"))
	r.ok("issue", "client", "boss", "--role", "admin", "--scope", "ops", "--out", filepath.Join(dir, "boss"))
	r.ok("issue", "client", "mallory", "--role", "operator", "--out", filepath.Join(dir, "mallory"))
	r.ok("revoke", "--reason", "key-compromise", "mallory")

	page := adminProxy(t, sp.url, filepath.Join(dir, "boss")) + "/ui/"
	dom := chromium(t, "--dump-dom", page)
	for _, want := range []string{
		`<table id="access-map">`, "<td>dev</td>", "<td>lead</td>", "<td>staging1.example</td>", "<td>prod1.example</td>",
		"<td>readonly</td>", // lead on prod, by group_roles
		`<svg id="timeline"`, "dev (client)", "prod1.example (daemon)",
		`<table id="revocation-list">`, "<td>mallory</td>", "key-compromise",
		"Read-only view for boss (admin)",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q:\n%s", want, dom)
		}
	}
	// mallory is revoked: it reaches nothing; dev expires within 30 days,
	// lead (30 days) does not show in the expiring list.
	if strings.Contains(strings.Split(dom, `id="expiring"`)[0], "mallory") {
		t.Error("a revoked certificate shows in the access map")
	}
	if i := strings.Index(dom, `<table id="expiring-list">`); i < 0 || !strings.Contains(dom[i:], "<td>dev</td>") {
		t.Errorf("dev is not listed as expiring:\n%s", dom)
	}

	shot := filepath.Join(t.TempDir(), "ui.png")
	chromium(t, "--window-size=1280,1100", "--hide-scrollbars", "--screenshot="+shot, page)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 10000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("no screenshot (%v, %d bytes)", err, len(png))
	}
	if os.Getenv("DOCKCA_UI_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "ui.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// /ui leads to /ui/.
	if resp, err := http.Get(strings.TrimSuffix(page, "/")); err != nil || resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/" {
		t.Errorf("/ui: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}

	// Without an admin certificate the page is refused.
	for who, c := range map[string]struct {
		proxy string
		want  int
	}{
		"lead (operator)":   {adminProxy(t, sp.url, filepath.Join(dir, "lead")), http.StatusForbidden},
		"mallory (revoked)": {adminProxy(t, sp.url, filepath.Join(dir, "mallory")), http.StatusForbidden},
		"nobody (no cert)":  {adminProxyNoCert(t, sp.url, filepath.Join(dir, "boss")), http.StatusUnauthorized},
	} {
		resp, err := http.Get(c.proxy + "/ui/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("/ui/ as %s: %d, want %d", who, resp.StatusCode, c.want)
		}
	}
}

// adminProxyNoCert is adminProxy without a client certificate.
func adminProxyNoCert(t *testing.T, serviceURL, caDir string) string {
	t.Helper()
	u, _ := url.Parse(serviceURL)
	caPEM, err := os.ReadFile(filepath.Join(caDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}
