package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// dockca audit through the CLI, against a dockerd set up with real dockca
// certificates (info, exit 0) and a plain one (critical, exit 3).
func TestAuditCommandEndToEnd(t *testing.T) {
	dockerdtest.Require(t)
	r := newCLI(t)
	initCA(t, r)
	dir := filepath.Join(t.TempDir(), "daemon")
	r.ok("issue", "daemon", "127.0.0.1", "--out", dir)
	good := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true,
		CACert: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "server-cert.pem"), Key: filepath.Join(dir, "server-key.pem")})
	plain := dockerdtest.Start(t, dockerdtest.Options{})

	res := r.run("audit", "--json", good.Addr)
	if res.code != 0 {
		t.Fatalf("audit of a dockca mTLS daemon: exit %d\n%s%s", res.code, res.out, res.err)
	}
	var rep struct {
		Findings []struct{ Severity, ID string } `json:"findings"`
	}
	if err := json.Unmarshal([]byte(res.out), &rep); err != nil {
		t.Fatalf("audit --json: %v\n%s", err, res.out)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Severity != "info" || rep.Findings[0].ID != "mtls-ok" {
		t.Fatalf("findings for the dockca daemon: %+v", rep.Findings)
	}

	res = r.run("audit", plain.Addr)
	if res.code != 3 || !strings.Contains(res.out, "critical") {
		t.Fatalf("audit of a plain daemon: exit %d\n%s%s", res.code, res.out, res.err)
	}
	if res := r.run("audit", "--fail-on", "none", plain.Addr); res.code != 0 {
		t.Fatalf("--fail-on none: exit %d", res.code)
	}

	// A second CA's home sees the same daemon as not issued by it.
	other := newCLI(t)
	initCA(t, other)
	res = other.run("audit", good.Addr)
	if res.code != 3 || !strings.Contains(res.out, "high") {
		t.Fatalf("audit with another CA's root: exit %d\n%s%s", res.code, res.out, res.err)
	}

	start := time.Now()
	res = r.run("audit", "10.0.0.0/8")
	if res.code != 1 || !strings.Contains(res.err, "/16") || time.Since(start) > time.Second {
		t.Fatalf("too-large range: %+v after %s", res, time.Since(start))
	}
	if res := r.run("audit", "--fail-on", "sometimes", "127.0.0.1"); res.code != 2 {
		t.Fatalf("bad --fail-on: %+v", res)
	}
}
