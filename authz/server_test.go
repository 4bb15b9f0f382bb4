package authz

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/pki"
)

// servePlugin runs Serve on a socket in a short temp dir and returns a
// client that talks to it the way dockerd does.
func servePlugin(t *testing.T, o Options) (*http.Client, string, func() error) {
	t.Helper()
	if o.Socket == "" {
		o.Socket = filepath.Join(dockerdtest.ShortTempDir(t), "p.sock")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, o) }()
	waitSocket(t, o.Socket, done)
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(10 * time.Second):
				stopErr = errors.New("Serve did not return")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return unixClient(o.Socket), o.Socket, stop
}

func waitSocket(t *testing.T, sock string, done chan error) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned early: %v", err)
		default:
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("plugin socket %s never answered", sock)
}

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

func post(t *testing.T, c *http.Client, path string, body []byte) Response {
	t.Helper()
	resp, err := c.Post("http://plugin"+path, pluginMedia, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %s", path, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != pluginMedia {
		t.Fatalf("content type %q", ct)
	}
	var r Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestServeSpeaksThePluginProtocol(t *testing.T) {
	p := newPKI(t)
	var audit bytes.Buffer
	al := NewAuditLog(&syncWriter{w: &audit})
	c, sock, stop := servePlugin(t, Options{Root: p.root, Revocations: newMapRevocations(), Audit: al})

	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}

	resp, err := c.Post("http://plugin/Plugin.Activate", pluginMedia, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(b)) != `{"Implements":["authz"]}` {
		t.Fatalf("activate: %s", b)
	}

	ro := p.client(t, "rita", "readonly")
	good, _ := json.Marshal(tlsRequest(ro, "GET", "/v1.41/containers/json", nil))
	if r := post(t, c, "/AuthZPlugin.AuthZReq", good); !r.Allow {
		t.Fatalf("readonly GET denied: %+v", r)
	}
	deny, _ := json.Marshal(tlsRequest(ro, "POST", "/v1.41/volumes/create", []byte(`{"Name":"v"}`)))
	if r := post(t, c, "/AuthZPlugin.AuthZReq", deny); r.Allow || r.Msg != "dockca: role readonly may not POST /volumes/create" {
		t.Fatalf("readonly POST: %+v", r)
	}
	if r := post(t, c, "/AuthZPlugin.AuthZRes", good); !r.Allow {
		t.Fatalf("response denied: %+v", r)
	}

	malformed := map[string]string{
		"not json":        `hello`,
		"truncated":       `{"RequestMethod":"GET"`,
		"missing method":  `{"RequestUri":"/_ping"}`,
		"missing uri":     `{"RequestMethod":"GET"}`,
		"bad base64 body": `{"RequestMethod":"POST","RequestUri":"/containers/create","RequestBody":"!!!"}`,
		"bad base64 cert": `{"RequestMethod":"GET","RequestUri":"/_ping","RequestPeerCertificates":["%%%"]}`,
		"cert not pem":    `{"RequestMethod":"GET","RequestUri":"/_ping","User":"x","RequestPeerCertificates":["aGVsbG8="]}`,
		"trailing data":   `{"RequestMethod":"GET","RequestUri":"/_ping"} {}`,
		"wrong types":     `{"RequestMethod":1,"RequestUri":"/_ping"}`,
	}
	for name, body := range malformed {
		for _, path := range []string{"/AuthZPlugin.AuthZReq", "/AuthZPlugin.AuthZRes"} {
			if strings.HasPrefix(name, "bad base64") || name == "cert not pem" || name == "wrong types" {
				if path == "/AuthZPlugin.AuthZRes" {
					continue // the response call checks only its shape (see checkResponseCall)
				}
			}
			if r := post(t, c, path, []byte(body)); r.Allow || !strings.HasPrefix(r.Msg, "dockca: ") {
				t.Errorf("%s on %s: %+v", name, path, r)
			}
		}
	}
	// Still serving after all that.
	if r := post(t, c, "/AuthZPlugin.AuthZReq", good); !r.Allow {
		t.Fatalf("plugin stopped serving: %+v", r)
	}

	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}

	// The audit holds who, what and why, and no body or query.
	var lines []AuditEntry
	sc := bufio.NewScanner(bytes.NewReader(audit.Bytes()))
	for sc.Scan() {
		var e AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		lines = append(lines, e)
	}
	if len(lines) < 3 {
		t.Fatalf("audit has %d lines:\n%s", len(lines), audit.String())
	}
	if e := lines[1]; e.User != "rita" || e.Serial != pki.SerialOf(ro.cert) || e.Role != "readonly" || e.Method != "POST" ||
		e.Path != "/volumes/create" || e.Decision != "deny" || e.Rule != "no-rule" || !strings.Contains(e.Reason, "may not") {
		t.Fatalf("audit entry: %+v", e)
	}
	if strings.Contains(audit.String(), `"Name"`) {
		t.Fatal("audit log contains a request body")
	}
}

type syncWriter struct {
	w io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) { return s.w.Write(p) }

func TestServeSocketHandling(t *testing.T) {
	p := newPKI(t)
	dir := dockerdtest.ShortTempDir(t)
	sock := filepath.Join(dir, "plugins", "x.sock")
	o := Options{Root: p.root, Revocations: newMapRevocations(), Socket: sock}

	// A stale socket from a crashed plugin is replaced.
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	_, _, stop := servePlugin(t, o)

	// A live one is not stolen.
	err = Serve(context.Background(), o)
	if !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second Serve: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A regular file is never deleted.
	if err := os.WriteFile(sock, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Serve(context.Background(), o); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Serve over a file: %v", err)
	}
	if err := Serve(context.Background(), Options{Socket: sock}); !errors.Is(err, ErrOptions) {
		t.Fatalf("Serve without root: %v", err)
	}
}

func TestAuditFailureDeniesTLSButNotLocal(t *testing.T) {
	p := newPKI(t)
	a := newTestAuthorizer(t, p, nil, func(o *Options) { o.Audit = NewAuditLog(failWriter{}) })
	d := a.Decide(context.Background(), tlsRequest(p.client(t, "a", "admin"), "GET", "/_ping", nil))
	if d.Allow || d.Rule != "audit-failed" {
		t.Fatalf("TLS request with a broken audit: %+v", d)
	}
	d = a.Decide(context.Background(), &Request{RequestMethod: "GET", RequestURI: "/_ping"})
	if !d.Allow {
		t.Fatalf("local request with a broken audit: %+v", d)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestOpenAuditLogPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	l, err := OpenAuditLog(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Write(time.Now(), Decision{Allow: true, User: "a", Method: "GET", Path: "/x", Rule: "read"}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "audit.jsonl"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", path, fi.Mode().Perm(), want, err)
		}
	}
}
