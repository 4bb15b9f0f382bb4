package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/store"
)

// caRecord is the stored CA record as JSON-comparable bytes, to show that
// a refused rotation changed nothing.
func caRecord(t *testing.T, r *cliRunner) string {
	t.Helper()
	st, err := store.Open(store.Path(r.home()), &store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := st.CA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return string(rec.RootDER) + string(rec.IntermediateDER) + string(rec.CrossDER) + rec.OverlapUntil.String() + string(rune('0'+len(rec.Previous)))
}

func TestRotateBadInput(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	before := caRecord(t, r)
	cases := []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{[]string{"rotate", "intermediate", "--key-type", "dsa"}, nil, 2, `rotate intermediate: unknown key type "dsa"`},
		{[]string{"rotate", "intermediate", "--ttl", "soon"}, nil, 2, `rotate intermediate: --ttl: "soon" is not a duration`},
		{[]string{"rotate", "intermediate", "--ttl", "2h"}, nil, 1, "shorter than a day"},
		{[]string{"rotate", "intermediate", "--ttl", "36500d"}, nil, 1, "outlives the root"},
		{[]string{"rotate", "root", "--overlap", "forever"}, nil, 2, `rotate root: --overlap: "forever" is not a duration`},
		{[]string{"rotate", "root", "extra"}, nil, 2, "extra"},
		{[]string{"rotate", "root", "--bogus"}, nil, 2, "bogus"},
		{[]string{"rotate", "root"}, map[string]string{"DOCKCA_PASSWORD": "wrong password"}, 1, "wrong CA password"},
		{[]string{"rotate", "finish"}, nil, 1, "no root rotation is in progress"},
		{[]string{"rotate", "sideways"}, nil, 2, "sideways"},
	}
	for _, c := range cases {
		rr := &cliRunner{t: t, env: map[string]string{}}
		for k, v := range r.env {
			rr.env[k] = v
		}
		for k, v := range c.env {
			rr.env[k] = v
		}
		res := rr.run(c.args...)
		if res.code != c.code || !strings.Contains(res.err, c.want) || strings.Count(res.err, "\n") != 1 || res.out != "" {
			t.Errorf("dockca %s: exit %d, stderr %q, stdout %q; want exit %d and one line with %q", strings.Join(c.args, " "), res.code, res.err, res.out, c.code, c.want)
		}
		if after := caRecord(t, r); after != before {
			t.Fatalf("dockca %s changed the CA", strings.Join(c.args, " "))
		}
	}
	// No CA at all.
	empty := &cliRunner{t: t, env: map[string]string{"DOCKCA_HOME": t.TempDir(), "DOCKCA_PASSWORD": "x"}}
	if res := empty.run("rotate", "root"); res.code != 1 || !strings.Contains(res.err, "no certificate authority") {
		t.Errorf("rotate root without a CA: %d %q", res.code, res.err)
	}
}

// rotate intermediate with a real dockerd, its plugin and the gate (local
// mode): certificates of both intermediates reach both daemons, and a
// revocation of one under the old intermediate is enforced by both.
func TestRotateIntermediateEnforcedByPluginAndGate(t *testing.T) {
	dockerdtest.Require(t)
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	oldClient := filepath.Join(dir, "old")
	r.ok("issue", "client", "old", "--out", oldClient)
	out := r.ok("rotate", "intermediate", "--ttl", "400d")
	if !strings.Contains(out, `New intermediate "dockca Intermediate CA 2"`) {
		t.Fatalf("rotate intermediate: %s", out)
	}
	newClient := filepath.Join(dir, "new")
	r.ok("issue", "client", "new", "--out", newClient)
	status := r.ok("rotate", "status")
	if !strings.Contains(status, "client  old") || strings.Contains(status, "client  new") || strings.Contains(status, "Old root") {
		t.Fatalf("rotate status after rotate intermediate:\n%s", status)
	}
	daemonDir := filepath.Join(dir, "daemon")
	r.ok("issue", "daemon", "127.0.0.1", "--out", daemonDir)
	plugin := startAuthzPlugin(t, r)
	d := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(daemonDir, "ca.pem"),
		Cert: filepath.Join(daemonDir, "server-cert.pem"), Key: filepath.Join(daemonDir, "server-key.pem"),
		Args: []string{"--authorization-plugin=" + plugin}})
	gd := dockerdtest.Start(t, dockerdtest.Options{NoTCP: true})
	gateAddr := fmt.Sprintf("127.0.0.1:%d", dockerdtest.FreePort(t, "127.0.0.1"))
	startRotateGate(t, r, gateAddr, gd.Socket, daemonDir)

	for _, addr := range []string{d.Addr, gateAddr} {
		for _, c := range []string{oldClient, newClient} {
			if out, err := dockerTLS(t, addr, c, "ps", "-q"); err != nil {
				t.Fatalf("%s at %s before the revocation: %v\n%s", filepath.Base(c), addr, err, out)
			}
		}
	}
	r.ok("revoke", "old")
	if out, err := dockerTLS(t, d.Addr, oldClient, "ps", "-q"); err == nil || !strings.Contains(out, "was revoked") {
		t.Fatalf("the plugin let a revoked old-intermediate certificate through: %v\n%s", err, out)
	}
	if out, err := dockerTLS(t, gateAddr, oldClient, "ps", "-q"); err == nil {
		t.Fatalf("the gate let a revoked old-intermediate certificate through:\n%s", out)
	}
	for _, addr := range []string{d.Addr, gateAddr} {
		if out, err := dockerTLS(t, addr, newClient, "ps", "-q"); err != nil {
			t.Fatalf("new client at %s after the revocation: %v\n%s", addr, err, out)
		}
	}
	// The CLI's CRL is the current intermediate's.
	crl := filepath.Join(dir, "crl.pem")
	if err := os.WriteFile(crl, []byte(r.ok("crl", "--pem")), 0o600); err != nil {
		t.Fatal(err)
	}
	requireOpenSSL(t)
	if out := opensslOut(t, "crl", "-in", crl, "-noout", "-issuer"); !strings.Contains(out, "Intermediate CA 2") {
		t.Fatalf("the stored CRL after rotate intermediate: %s", out)
	}
}

// rotate root then finish --force from the CLI: refused without --force
// (one line naming what depends on the old root), then the old root is
// retired and new files carry the new root only.
func TestRotateRootFinishForce(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	r.ok("issue", "client", "alice", "--out", filepath.Join(dir, "alice"))
	out := r.ok("rotate", "root", "--overlap", "10d")
	if !strings.Contains(out, `New root "dockca Root CA 2" (generation 2)`) {
		t.Fatalf("rotate root: %s", out)
	}
	r.ok("issue", "client", "bob", "--out", filepath.Join(dir, "bob"))
	if n := countCerts(t, readFile(t, filepath.Join(dir, "bob", "ca.pem"))); n != 2 {
		t.Fatalf("issue during the overlap: ca.pem has %d roots", n)
	}
	status := r.ok("rotate", "status")
	if !strings.Contains(status, "Old root still trusted:") || !strings.Contains(status, "client  alice") || strings.Contains(status, "bob") {
		t.Fatalf("rotate status:\n%s", status)
	}
	before := caRecord(t, r)
	res := r.run("rotate", "finish")
	if res.code != 1 || !strings.Contains(res.err, `1 certificates still depend on the old root: client "alice"`) || strings.Count(res.err, "\n") != 1 {
		t.Fatalf("rotate finish with a dependent: %d %q", res.code, res.err)
	}
	if caRecord(t, r) != before {
		t.Fatal("a refused finish changed the CA")
	}
	out = r.ok("rotate", "finish", "--force")
	if !strings.Contains(out, "Forced: 1 certificates under the old root stop working") {
		t.Fatalf("rotate finish --force: %s", out)
	}
	if status := r.ok("rotate", "status"); strings.Contains(status, "Old root") || !strings.Contains(status, "Generation 2") {
		t.Fatalf("rotate status after finish:\n%s", status)
	}
	r.ok("issue", "client", "carol", "--out", filepath.Join(dir, "carol"))
	if n := countCerts(t, readFile(t, filepath.Join(dir, "carol", "ca.pem"))); n != 1 || countCerts(t, readFile(t, filepath.Join(dir, "carol", "cert.pem"))) != 2 {
		t.Fatalf("issue after finish: ca.pem has %d roots", n)
	}
	// Every generation's certificates still check out as this CA's.
	if out := r.ok("check"); !strings.Contains(out, "No problems found") {
		t.Fatalf("check after a forced finish:\n%s", out)
	}
}
