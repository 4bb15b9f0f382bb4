package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/store"
)

var fingerprintRE = regexp.MustCompile(`Root fingerprint \(SHA-256\): ([0-9a-f]{64})\n`)

func initCA(t *testing.T, r *cliRunner, extra ...string) string {
	t.Helper()
	out := r.ok(append([]string{"init"}, extra...)...)
	m := fingerprintRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("init printed no fingerprint:\n%s", out)
	}
	return m[1]
}

func requireOpenSSL(t *testing.T) { dockerdtest.RequireCommand(t, "openssl") }

func opensslOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestInitIssueAndCrossCheck(t *testing.T) {
	requireOpenSSL(t)
	r := newCLI(t)
	fp := initCA(t, r)

	fi, err := os.Stat(r.home())
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("home mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	db, err := os.Stat(store.Path(r.home()))
	if err != nil || db.Mode().Perm() != 0o600 {
		t.Fatalf("database mode %v, %v; want 0600", db.Mode().Perm(), err)
	}

	// Flags after the positional argument, as in docker's CLI.
	out := filepath.Join(t.TempDir(), "alice")
	r.ok("issue", "client", "alice", "--role", "readonly", "--out", out)
	for name, mode := range map[string]os.FileMode{"ca.pem": 0o644, "cert.pem": 0o644, "key.pem": 0o600} {
		fi, err := os.Stat(filepath.Join(out, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode().Perm(), err, mode)
		}
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o700 {
		t.Errorf("output dir mode %v, want 0700", fi.Mode().Perm())
	}
	// The fingerprint init printed is the one openssl computes for ca.pem.
	sslFP := opensslOut(t, "x509", "-in", filepath.Join(out, "ca.pem"), "-noout", "-fingerprint", "-sha256")
	if got := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(strings.SplitN(sslFP, "=", 2)[1]), ":", "")); got != fp {
		t.Fatalf("openssl fingerprint %s, init printed %s", got, fp)
	}
	// cert.pem is leaf then intermediate, and verifies against ca.pem.
	opensslOut(t, "verify", "-CAfile", filepath.Join(out, "ca.pem"), "-untrusted", filepath.Join(out, "cert.pem"), "-purpose", "sslclient", filepath.Join(out, "cert.pem"))
	// The key matches the certificate.
	certPub := opensslOut(t, "x509", "-in", filepath.Join(out, "cert.pem"), "-noout", "-pubkey")
	keyPub := opensslOut(t, "pkey", "-in", filepath.Join(out, "key.pem"), "-pubout")
	if certPub != keyPub {
		t.Fatal("key.pem does not match cert.pem")
	}

	list := listJSON(t, r)
	if len(list) != 1 || list[0]["name"] != "alice" || list[0]["role"] != "readonly" || list[0]["kind"] != "client" || list[0]["status"] != "valid" {
		t.Fatalf("ls --json: %v", list)
	}
	serial := list[0]["serial"].(string)
	sslSerial := opensslOut(t, "x509", "-in", filepath.Join(out, "cert.pem"), "-noout", "-serial")
	if !strings.EqualFold(strings.TrimSpace(strings.TrimPrefix(sslSerial, "serial=")), serial) {
		t.Fatalf("ls serial %s, openssl %s", serial, sslSerial)
	}

	// Daemon certificate: names typed as DNS and IP, daemon.json fragment.
	dout := filepath.Join(t.TempDir(), "d")
	r.ok("issue", "daemon", "docker1.example", "--san", "127.0.0.1", "--san", "docker1", "--out", dout)
	opensslOut(t, "x509", "-in", filepath.Join(dout, "server-cert.pem"), "-noout", "-checkip", "127.0.0.1")
	text := opensslOut(t, "x509", "-in", filepath.Join(dout, "server-cert.pem"), "-noout", "-ext", "subjectAltName,extendedKeyUsage")
	for _, want := range []string{"DNS:docker1.example", "DNS:docker1", "IP Address:127.0.0.1", "TLS Web Server Authentication"} {
		if !strings.Contains(text, want) {
			t.Errorf("daemon certificate lacks %q:\n%s", want, text)
		}
	}
	var frag map[string]any
	b, _ := os.ReadFile(filepath.Join(dout, "daemon.json"))
	if err := json.Unmarshal(b, &frag); err != nil || frag["tlsverify"] != true || frag["tlskey"] != filepath.Join(dout, "server-key.pem") {
		t.Fatalf("daemon.json fragment: %s", b)
	}

	// Existing files are not replaced without --force.
	res := r.run("issue", "client", "alice", "--out", out)
	if res.code != 1 || !strings.Contains(res.err, "already exists") {
		t.Fatalf("reissue into the same dir: %+v", res)
	}
	if n := len(listJSON(t, r)); n != 2 {
		t.Fatalf("a refused issue stored a certificate: %d records", n)
	}
	r.ok("issue", "client", "alice", "--out", out, "--force")
	if n := len(listJSON(t, r)); n != 3 {
		t.Fatalf("after --force: %d records, want 3", n)
	}
}

func listJSON(t *testing.T, r *cliRunner, args ...string) []map[string]any {
	t.Helper()
	var list []map[string]any
	out := r.ok(append([]string{"ls", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("ls --json output does not parse: %v\n%s", err, out)
	}
	return list
}

func TestRevokeBySerialAndName(t *testing.T) {
	requireOpenSSL(t)
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	r.ok("issue", "client", "bob", "--out", filepath.Join(dir, "b1"))
	r.ok("issue", "client", "bob", "--out", filepath.Join(dir, "b2"))
	r.ok("issue", "client", "carol", "--out", filepath.Join(dir, "c"))
	list := listJSON(t, r, "--status", "valid")
	if len(list) != 3 {
		t.Fatalf("want 3 valid, got %v", list)
	}
	var carol string
	for _, e := range list {
		if e["name"] == "carol" {
			carol = e["serial"].(string)
		}
	}
	// Serial as openssl prints it in -text: upper case with colons, plus a
	// leading zero.
	var parts []string
	for i := 0; i < len(carol); i += 2 {
		parts = append(parts, strings.ToUpper(carol[i:i+2]))
	}
	out := r.ok("revoke", "--reason", "key-compromise", "00:"+strings.Join(parts, ":"))
	if !strings.Contains(out, "revoked") || !strings.Contains(out, carol) {
		t.Fatalf("revoke by serial: %s", out)
	}
	out = r.ok("revoke", carol)
	if !strings.Contains(out, "already revoked") {
		t.Fatalf("second revoke should say so: %s", out)
	}
	out = r.ok("revoke", "bob")
	if strings.Count(out, "revoked          ") != 2 {
		t.Fatalf("revoke by name should list both bob certificates:\n%s", out)
	}
	if n := len(listJSON(t, r, "--status", "revoked")); n != 3 {
		t.Fatalf("want 3 revoked, got %d", n)
	}
	// The CRL lists all three and is signed by the intermediate.
	crlPath := filepath.Join(dir, "crl.pem")
	r.ok("crl", "--pem", "--out", crlPath)
	text := opensslOut(t, "crl", "-in", crlPath, "-noout", "-text")
	for _, e := range listJSON(t, r, "--status", "revoked") {
		if !strings.Contains(strings.ToLower(strings.ReplaceAll(text, ":", "")), e["serial"].(string)) {
			t.Errorf("CRL lacks %s", e["serial"])
		}
	}
	if !strings.Contains(text, "Key Compromise") {
		t.Errorf("CRL lacks the reason:\n%s", text)
	}
	// An unknown argument among known ones revokes nothing.
	r.ok("issue", "client", "dave", "--out", filepath.Join(dir, "d"))
	res := r.run("revoke", "dave", "nobody")
	if res.code != 1 || !strings.Contains(res.err, "nobody") {
		t.Fatalf("revoke with an unknown name: %+v", res)
	}
	if n := len(listJSON(t, r, "--status", "valid")); n != 1 {
		t.Fatalf("dave must still be valid, %d valid", n)
	}
}

func TestSignCSRMadeByOpenSSL(t *testing.T) {
	requireOpenSSL(t)
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	key, csr := filepath.Join(dir, "k.pem"), filepath.Join(dir, "r.csr")
	opensslOut(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", csr, "-subj", "/CN=build01.example", "-addext", "subjectAltName=DNS:build01,IP:10.1.2.3")
	out := filepath.Join(dir, "cert.pem")
	r.ok("sign", "--kind", "daemon", "--ttl", "10d", "--out", out, csr)
	text := opensslOut(t, "x509", "-in", out, "-noout", "-text")
	for _, want := range []string{"CN=build01.example", "DNS:build01", "IP Address:10.1.2.3"} {
		if !strings.Contains(strings.ReplaceAll(text, " = ", "="), want) {
			t.Errorf("signed certificate lacks %q", want)
		}
	}
	// The certificate carries the CSR's key: the key never left.
	if opensslOut(t, "x509", "-in", out, "-noout", "-pubkey") != opensslOut(t, "pkey", "-in", key, "-pubout") {
		t.Fatal("signed certificate does not carry the CSR's key")
	}
	// To stdout, as a client certificate with a role.
	copensslKey, ccsr := filepath.Join(dir, "ck.pem"), filepath.Join(dir, "c.csr")
	opensslOut(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", copensslKey, "-out", ccsr, "-subj", "/CN=ci-bot")
	pemOut := r.ok("sign", "--kind", "client", "--role", "operator", ccsr)
	if strings.Count(pemOut, "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("sign should print leaf and intermediate:\n%s", pemOut)
	}
	list := listJSON(t, r, "--kind", "client")
	if len(list) != 1 || list[0]["name"] != "ci-bot" || list[0]["role"] != "operator" {
		t.Fatalf("ls --kind client: %v", list)
	}
}

// badCSRs writes a malformed CSR and one whose signature does not verify.
func badCSRs(t *testing.T, dir string) (garbage, wrongSig string) {
	t.Helper()
	garbage = filepath.Join(dir, "garbage.csr")
	os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n"), 0o600)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "mallory"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	der[len(der)-5] ^= 0xff // corrupt the signature
	wrongSig = filepath.Join(dir, "wrongsig.csr")
	os.WriteFile(wrongSig, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600)
	return garbage, wrongSig
}

// snapshot captures everything a command could change: the database's
// records and CRL, and the files under dir.
func snapshot(t *testing.T, r *cliRunner, dir string) string {
	t.Helper()
	st, err := store.Open(store.Path(r.home()), &store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	certs, _ := st.List(ctx, store.Filter{})
	revs, _ := st.Revocations(ctx)
	crl, _ := st.CRL(ctx)
	var b strings.Builder
	for _, c := range certs {
		b.WriteString(c.Serial + " ")
	}
	b.WriteString("| ")
	for _, r := range revs {
		b.WriteString(r.Serial + " ")
	}
	if crl != nil {
		b.WriteString("| crl " + string(rune('0'+crl.Number)))
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			b.WriteString(" " + p)
		}
		return nil
	})
	return b.String()
}

func TestBadInputIsOneLineAndChangesNothing(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	work := t.TempDir()
	r.ok("issue", "client", "keep", "--out", filepath.Join(work, "keep"))
	garbage, wrongSig := badCSRs(t, work)
	notADir := filepath.Join(work, "file")
	os.WriteFile(notADir, []byte("x"), 0o600)

	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"unknown kind", []string{"sign", "--kind", "server", garbage}, nil, 2, "unknown kind"},
		// Roles are policy: a refusal, like a lifetime above the maximum.
		{"unknown role", []string{"issue", "client", "x", "--role", "root"}, nil, 1, "unknown role"},
		{"malformed role", []string{"issue", "client", "x", "--role", "Root!"}, nil, 2, "not a role name"},
		{"ttl above maximum", []string{"issue", "client", "x", "--ttl", "91d"}, nil, 1, "above the client maximum"},
		{"daemon ttl above maximum", []string{"issue", "daemon", "h.example", "--ttl", "366d"}, nil, 1, "above the daemon maximum"},
		{"bad ttl", []string{"issue", "client", "x", "--ttl", "soon"}, nil, 2, "not a duration"},
		{"invalid san", []string{"issue", "daemon", "h.example", "--san", "bad_name"}, nil, 1, "RFC 1123"},
		{"wildcard", []string{"issue", "daemon", "*.example"}, nil, 1, "wildcard"},
		{"empty name", []string{"issue", "client", ""}, nil, 1, "empty"},
		{"bad client name", []string{"issue", "client", "bob smith"}, nil, 1, "not allowed"},
		{"missing name", []string{"issue", "client"}, nil, 2, "missing NAME"},
		{"extra argument", []string{"issue", "client", "a", "b"}, nil, 2, "unexpected argument"},
		{"unknown flag", []string{"issue", "client", "a", "--colour"}, nil, 2, "colour"},
		{"unknown command", []string{"frobnicate"}, nil, 2, "unknown command"},
		{"wrong password", []string{"issue", "client", "x", "--out", filepath.Join(work, "x")}, map[string]string{"DOCKCA_PASSWORD": "wrong password!"}, 1, "wrong CA password"},
		{"no password", []string{"issue", "client", "x", "--out", filepath.Join(work, "x")}, map[string]string{"DOCKCA_PASSWORD": ""}, 1, "no CA password"},
		{"malformed csr", []string{"sign", "--kind", "client", garbage}, nil, 1, "invalid certificate request"},
		{"wrongly signed csr", []string{"sign", "--kind", "client", wrongSig}, nil, 1, "invalid certificate request"},
		{"missing csr file", []string{"sign", "--kind", "client", filepath.Join(work, "nope.csr")}, nil, 1, "no such file"},
		{"unwritable output", []string{"issue", "client", "x", "--out", filepath.Join(notADir, "sub")}, nil, 1, "not a directory"},
		{"unknown reason", []string{"revoke", "--reason", "because", "keep"}, nil, 2, "unknown revocation reason"},
		{"unknown serial", []string{"revoke", "abcdef0123"}, nil, 1, "no certificate"},
		{"init twice", []string{"init"}, nil, 1, "refusing to replace"},
		{"bad key type", []string{"init", "--key-type", "dsa"}, nil, 2, "unknown key type"},
		{"bad status", []string{"ls", "--status", "fine"}, nil, 2, "unknown status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, r, work)
			saved := map[string]string{}
			for k, v := range c.env {
				saved[k] = r.env[k]
				r.env[k] = v
			}
			res := r.run(c.args...)
			for k, v := range saved {
				r.env[k] = v
			}
			if res.code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", res.code, c.code, res.err)
			}
			first := strings.SplitN(res.err, "\n", 2)[0]
			if !strings.HasPrefix(first, "dockca: ") || !strings.Contains(first, c.want) {
				t.Errorf("stderr %q should be one line containing %q", res.err, c.want)
			}
			if strings.Contains(res.err, "goroutine") || strings.Count(res.err, "\n") != 1 {
				t.Errorf("stderr is not one clear sentence: %q", res.err)
			}
			if after := snapshot(t, r, work); after != before {
				t.Errorf("state changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestLockedAndCorruptDatabase(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	st, err := store.Open(store.Path(r.home()), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := r.run("ls")
	st.Close()
	if res.code != 1 || !strings.Contains(res.err, "locked by another dockca process") {
		t.Fatalf("locked database: %+v", res)
	}

	bad := newCLI(t)
	os.MkdirAll(bad.home(), 0o700)
	os.WriteFile(store.Path(bad.home()), []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600)
	for _, args := range [][]string{{"ls"}, {"issue", "client", "x"}} {
		res := bad.run(args...)
		if res.code != 1 || !strings.Contains(res.err, "dockca.db is damaged: it is not a bbolt database") {
			t.Fatalf("corrupt database, %v: %+v", args, res)
		}
	}
}

func TestNoPasswordInitWarnsLoudly(t *testing.T) {
	r := newCLI(t)
	delete(r.env, "DOCKCA_PASSWORD")
	res := r.run("init", "--no-password", "--key-type", "ed25519", "--name", "dev")
	if res.code != 0 || !strings.Contains(res.err, "UNENCRYPTED") {
		t.Fatalf("init --no-password: %+v", res)
	}
	// No password is asked for afterwards.
	r.ok("issue", "client", "dev", "--out", filepath.Join(t.TempDir(), "dev"))

	// Without --no-password and without any password source, init fails
	// and leaves no database behind.
	r2 := newCLI(t)
	delete(r2.env, "DOCKCA_PASSWORD")
	res = r2.run("init")
	if res.code != 1 || !strings.Contains(res.err, "no CA password") {
		t.Fatalf("init without password: %+v", res)
	}
	if store.Exists(r2.home()) {
		t.Fatal("a failed init left a database")
	}
	// A password file works, and a short password is refused.
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("short\n"), 0o600)
	res = r2.run("--password-file", pwFile, "init")
	if res.code != 1 || !strings.Contains(res.err, "at least") {
		t.Fatalf("short password: %+v", res)
	}
	os.WriteFile(pwFile, []byte("a long enough password\n"), 0o600)
	r2.ok("--password-file", pwFile, "init")
	r2.ok("--password-file", pwFile, "issue", "client", "eve", "--out", filepath.Join(t.TempDir(), "eve"))
}

func TestBackupIsAWorkingHome(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	r.ok("issue", "client", "frank", "--out", filepath.Join(t.TempDir(), "f"))
	copyHome := t.TempDir()
	r.ok("backup", filepath.Join(copyHome, "dockca.db"))
	if fi, _ := os.Stat(filepath.Join(copyHome, "dockca.db")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup mode %v", fi.Mode().Perm())
	}
	res := r.run("backup", filepath.Join(copyHome, "dockca.db"))
	if res.code != 1 || !strings.Contains(res.err, "already exists") {
		t.Fatalf("backup over an existing file: %+v", res)
	}
	r2 := newCLI(t)
	r2.env["DOCKCA_HOME"] = copyHome
	if list := listJSON(t, r2); len(list) != 1 || list[0]["name"] != "frank" {
		t.Fatalf("restored home lists %v", list)
	}
	r2.ok("issue", "client", "grace", "--out", filepath.Join(t.TempDir(), "g"))
}

func TestDefaultHome(t *testing.T) {
	r := newCLI(t)
	xdg := t.TempDir()
	r.env["XDG_DATA_HOME"] = xdg
	if res := r.runRaw("init"); res.code != 0 {
		t.Fatalf("init: %+v", res)
	}
	if !store.Exists(filepath.Join(xdg, "dockca")) {
		t.Fatal("init without --home did not use $XDG_DATA_HOME/dockca")
	}
	delete(r.env, "XDG_DATA_HOME")
	if res := r.runRaw("init"); res.code != 0 {
		t.Fatalf("init: %+v", res)
	}
	if !store.Exists(filepath.Join(r.env["HOME"], ".local", "share", "dockca")) {
		t.Fatal("init without --home or XDG_DATA_HOME did not use ~/.local/share/dockca")
	}
}

func TestInitTightensAnExistingHome(t *testing.T) {
	r := newCLI(t)
	if err := os.MkdirAll(r.home(), 0o755); err != nil {
		t.Fatal(err)
	}
	initCA(t, r)
	if fi, err := os.Stat(r.home()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("home mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
}

// A client or host may be called help or h: urfave's help subcommand must
// not swallow it.
func TestNamesThatLookLikeHelp(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	for _, name := range []string{"help", "h"} {
		r.ok("issue", "client", name, "--out", filepath.Join(t.TempDir(), name))
	}
	if list := listJSON(t, r); len(list) != 2 {
		t.Fatalf("issued %d certificates, want 2", len(list))
	}
}
