package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// newCA initialises a CA in a temp home and opens it.
func newCA(t testing.TB, kt pki.KeyType, password string) (*store.Store, *Authority) {
	t.Helper()
	home := t.TempDir()
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := Init(context.Background(), st, InitOptions{Name: "test", KeyType: kt, Password: []byte(password)}); err != nil {
		t.Fatal(err)
	}
	a, err := Open(context.Background(), st, OpenOptions{Password: []byte(password), Actor: "test", CRL: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return st, a
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func openssl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func requireOpenSSL(t *testing.T) { dockerdtest.RequireCommand(t, "openssl") }

func TestIssueProfilesCrossCheckedWithOpenSSL(t *testing.T) {
	requireOpenSSL(t)
	for _, kt := range pki.KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			_, a := newCA(t, kt, "pw")
			ctx := context.Background()
			dir := t.TempDir()
			rootPath := writeFile(t, dir, "ca.pem", pki.PEMCert(a.Root()))
			interPath := writeFile(t, dir, "inter.pem", pki.PEMCert(a.Intermediate()))

			cli, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "alice", Role: pki.RoleReadonly})
			if err != nil {
				t.Fatal(err)
			}
			cliPath := writeFile(t, dir, "cli.pem", pki.PEMCert(cli.Leaf))
			out := openssl(t, "verify", "-CAfile", rootPath, "-untrusted", interPath, "-purpose", "sslclient", cliPath)
			if !strings.Contains(out, "OK") {
				t.Fatalf("openssl verify client: %s", out)
			}
			text := openssl(t, "x509", "-in", cliPath, "-noout", "-text")
			for _, want := range []string{"CN=alice", "OU=readonly", "TLS Web Client Authentication"} {
				if !strings.Contains(strings.ReplaceAll(text, " = ", "="), want) {
					t.Errorf("client certificate lacks %q:\n%s", want, text)
				}
			}
			if strings.Contains(text, "TLS Web Server Authentication") {
				t.Error("client certificate must not be valid for serverAuth")
			}
			if cli.Leaf.SerialNumber.BitLen() < 128 {
				t.Errorf("serial has only %d bits", cli.Leaf.SerialNumber.BitLen())
			}
			if skew := cli.Leaf.NotAfter.Sub(cli.Leaf.NotBefore); skew != pki.DefaultClientTTL+time.Minute {
				t.Errorf("client lifetime %s, want 30d plus one minute of backdating", skew)
			}

			srv, err := a.Issue(ctx, Request{Kind: pki.KindDaemon, Name: "docker1.example", SANs: []string{"127.0.0.1", "docker1"}})
			if err != nil {
				t.Fatal(err)
			}
			srvPath := writeFile(t, dir, "srv.pem", pki.PEMCert(srv.Leaf))
			openssl(t, "verify", "-CAfile", rootPath, "-untrusted", interPath, "-purpose", "sslserver", srvPath)
			openssl(t, "x509", "-in", srvPath, "-noout", "-checkhost", "docker1.example")
			ipOut := openssl(t, "x509", "-in", srvPath, "-noout", "-checkip", "127.0.0.1")
			if !strings.Contains(ipOut, "does match") {
				t.Errorf("IP SAN: %s", ipOut)
			}
			if srv.Record.Kind != pki.KindDaemon || len(srv.Record.SANs) != 3 {
				t.Errorf("daemon record: %+v", srv.Record)
			}
		})
	}
}

func TestRevokeAndCRL(t *testing.T) {
	st, a := newCA(t, pki.KeyECP256, "pw")
	ctx := context.Background()
	iss, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	before, err := st.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Revoke(ctx, iss.Leaf.SerialNumber, pki.Reason{Name: "key-compromise", Code: 1})
	if err != nil || res.Already {
		t.Fatalf("revoke: %v %+v", err, res)
	}
	again, err := a.Revoke(ctx, iss.Leaf.SerialNumber, pki.Reason{Name: "superseded", Code: 4})
	if err != nil || !again.Already || again.Record.Revocation.Reason != "key-compromise" {
		t.Fatalf("second revoke: %v %+v", err, again)
	}
	crl, err := st.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if crl.Number <= before.Number {
		t.Fatalf("CRL number did not increase: %d -> %d", before.Number, crl.Number)
	}
	rl, err := x509.ParseRevocationList(crl.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(a.Intermediate()); err != nil {
		t.Fatalf("CRL not signed by the intermediate: %v", err)
	}
	if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(iss.Leaf.SerialNumber) != 0 {
		t.Fatalf("CRL entries: %+v", rl.RevokedCertificateEntries)
	}
	if rl.NextUpdate.Sub(rl.ThisUpdate) < time.Hour {
		t.Fatalf("nextUpdate too close: %s", rl.NextUpdate.Sub(rl.ThisUpdate))
	}
	requireOpenSSL(t)
	{
		dir := t.TempDir()
		crlPath := writeFile(t, dir, "crl.der", crl.DER)
		interPath := writeFile(t, dir, "inter.pem", pki.PEMCert(a.Intermediate()))
		out := openssl(t, "crl", "-inform", "DER", "-in", crlPath, "-CAfile", interPath, "-noout", "-text")
		if !strings.Contains(strings.ToUpper(out), strings.ToUpper(pki.FormatSerial(iss.Leaf.SerialNumber))) {
			t.Errorf("openssl does not list the serial:\n%s", out)
		}
		// Full revocation check, as a TLS peer with CRL checking would do it.
		rootPath := writeFile(t, dir, "ca.pem", pki.PEMCert(a.Root()))
		crlPEM := writeFile(t, dir, "crl.pem", []byte(openssl(t, "crl", "-inform", "DER", "-in", crlPath, "-outform", "PEM")))
		leafPath := writeFile(t, dir, "leaf.pem", pki.PEMCert(iss.Leaf))
		cmd := exec.Command("openssl", "verify", "-crl_check", "-CAfile", rootPath, "-untrusted", interPath, "-CRLfile", crlPEM, leafPath)
		vout, verr := cmd.CombinedOutput()
		if verr == nil || !strings.Contains(string(vout), "revoked") {
			t.Errorf("openssl verify -crl_check should report revoked: %v\n%s", verr, vout)
		}
	}
}

func TestWrongPassword(t *testing.T) {
	home := t.TempDir()
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := Init(ctx, st, InitOptions{Password: []byte("right")}); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, st, OpenOptions{Password: []byte("wrong")})
	if !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("got %v, want ErrWrongPassword", err)
	}
	if _, err := Init(ctx, st, InitOptions{Password: []byte("x")}); !errors.Is(err, store.ErrCAExists) {
		t.Fatalf("second init: %v", err)
	}
}
