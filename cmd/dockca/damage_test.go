package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/dockca/dockca/store"
)

// damagedHome makes a CA home with a few records, then damages its
// database with damage, and returns the runner and the damaged file's hash.
func damagedHome(t *testing.T, damage func(t *testing.T, path string, good []byte)) (*cliRunner, [32]byte) {
	t.Helper()
	r := newCLI(t)
	initCA(t, r)
	for _, n := range []string{"a1", "a2", "a3"} {
		r.ok("issue", "client", n, "--out", filepath.Join(t.TempDir(), n))
	}
	r.ok("token", "create", "--kind", "client", "--ca-url", "https://127.0.0.1:8443", "t1")
	path := store.Path(r.home())
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damage(t, path, good)
	b, _ := os.ReadFile(path)
	return r, sha256.Sum256(b)
}

// TestDamagedDatabaseNeverPanics: for each kind of damage, every command
// that reads the database says "dockca.db is damaged: …; restore it from a
// backup" in one line, exits 1 and leaves the file as it was (before, issue
// and crl panicked, an empty file was silently made a new database, and a
// truncated one crashed with SIGBUS).
func TestDamagedDatabaseNeverPanics(t *testing.T) {
	pageSize := os.Getpagesize()
	damages := []struct {
		name   string
		damage func(t *testing.T, path string, good []byte)
		detail string
		// caOnly: the database opens and its records read; only the
		// commands that need the CA record meet the damage.
		caOnly bool
	}{
		{"empty", func(t *testing.T, p string, _ []byte) { os.WriteFile(p, nil, 0o600) }, "the file is empty", false},
		{"truncated to one page", func(t *testing.T, p string, g []byte) { os.WriteFile(p, g[:pageSize], 0o600) }, "truncated", false},
		{"truncated to two pages", func(t *testing.T, p string, g []byte) { os.WriteFile(p, g[:2*pageSize], 0o600) }, "truncated", false},
		{"truncated mid-page", func(t *testing.T, p string, g []byte) { os.WriteFile(p, g[:len(g)/2+100], 0o600) }, "truncated", false},
		{"not a bbolt file", func(t *testing.T, p string, _ []byte) {
			os.WriteFile(p, bytes.Repeat([]byte("not a database "), 1000), 0o600)
		}, "not a bbolt database", false},
		{"meta pages zeroed", func(t *testing.T, p string, g []byte) {
			b := append([]byte(nil), g...)
			clear(b[:2*pageSize])
			os.WriteFile(p, b, 0o600)
		}, "not a bbolt database", false},
		{"data pages zeroed", func(t *testing.T, p string, g []byte) {
			b := append([]byte(nil), g...)
			clear(b[2*pageSize:])
			os.WriteFile(p, b, 0o600)
		}, "page", false},
		{"foreign bbolt file", func(t *testing.T, p string, _ []byte) {
			os.Remove(p)
			db, err := bolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
			db.Close()
		}, "not a dockca database", false},
		{"bad record page", func(t *testing.T, p string, g []byte) {
			// Zero every page but the metas, the freelist and the root:
			// bbolt opens it and fails on the first lookup.
			b := append([]byte(nil), g...)
			for off := 2 * pageSize; off+pageSize <= len(b); off += pageSize {
				if pg := b[off+8 : off+10]; pg[0] == 0x01 || pg[0] == 0x02 {
					if off/pageSize != rootPage(g, pageSize) {
						clear(b[off : off+pageSize])
					}
				}
			}
			os.WriteFile(p, b, 0o600)
		}, "damaged", false},
		{"undecodable CA record", func(t *testing.T, p string, _ []byte) {
			db, err := bolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("ca"), []byte("{garbage")) })
			db.Close()
		}, "the CA record does not decode", true},
	}
	dir := t.TempDir()
	csr := filepath.Join(dir, "r.csr")
	writeTestCSR(t, csr, "signme")
	commands := [][]string{
		{"ls"}, {"show", "a1"}, {"issue", "client", "x", "--out", filepath.Join(dir, "x")}, {"sign", "--kind", "client", csr},
		{"revoke", "a1"}, {"crl"}, {"backup", filepath.Join(dir, "b.db")}, {"token", "create", "--kind", "client", "--ca-url", "https://127.0.0.1:8443", "t2"},
		{"token", "ls"}, {"check"}, {"policy", "show"}, {"policy", "set", "../../authz/testdata/policies/custom.yaml"},
		{"context", "add", "ctx1", "--host", "tcp://127.0.0.1:2376", "--no-check", "--docker-config", filepath.Join(dir, "docker")},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			r, sum := damagedHome(t, d.damage)
			for _, args := range commands {
				if d.caOnly && !needsCA(args) {
					continue
				}
				res := r.run(args...)
				line := strings.TrimSuffix(res.err, "\n")
				if res.code != 1 || strings.Contains(line, "\n") || !strings.Contains(line, "dockca.db is damaged: ") ||
					!strings.HasSuffix(line, "; restore it from a backup") || !strings.Contains(line, d.detail) {
					t.Errorf("%s: exit %d, stderr %q", strings.Join(args, " "), res.code, res.err)
				}
				if b, _ := os.ReadFile(store.Path(r.home())); sha256.Sum256(b) != sum {
					t.Fatalf("%s changed the damaged file", strings.Join(args, " "))
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "b.db")); err == nil {
				t.Fatal("backup of a damaged database left a file")
			}
		})
	}
}

// TestCheckReportsEachProblem: check lists every problem of a database
// that opens but holds bad records and indexes, and exits 1.
func TestCheckReportsEachProblem(t *testing.T) {
	r, _ := damagedHome(t, func(t *testing.T, p string, _ []byte) {
		db, err := bolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			certs := tx.Bucket([]byte("certs"))
			k, _ := certs.Cursor().First()
			// A record that does not decode, an index entry without a
			// record, and a revocation of a certificate never issued.
			if err := certs.Put(k, []byte("{not json")); err != nil {
				return err
			}
			if err := tx.Bucket([]byte("certs_by_name")).Put([]byte("ghost\x00\x01\x02"), nil); err != nil {
				return err
			}
			return tx.Bucket([]byte("revoked")).Put([]byte{9, 9, 9}, []byte(`{"serial":"090909"}`))
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
	})
	res := r.run("check")
	for _, want := range []string{"does not decode", `entry "ghost`, "revokes a certificate that has no record", "decrypted with the password"} {
		if !strings.Contains(res.out, want) {
			t.Errorf("check output lacks %q:\n%s", want, res.out)
		}
	}
	if res.code != 1 || !strings.Contains(res.err, "problems found") {
		t.Fatalf("check: exit %d %q", res.code, res.err)
	}
	// A wrong password is a problem of the keys.
	r.env["DOCKCA_PASSWORD"] = "not the password"
	res = r.run("check", "--json")
	if res.code != 1 || !strings.Contains(res.out, `"where": "root key"`) || !strings.Contains(res.out, `"where": "intermediate key"`) {
		t.Fatalf("check with a wrong password: %d\n%s%s", res.code, res.out, res.err)
	}
}

// writeTestCSR writes a PEM CSR for a client named cn.
func writeTestCSR(t *testing.T, path, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rootPage is the root bucket's page of the newest meta page.
func rootPage(b []byte, pageSize int) int {
	le := binary.LittleEndian
	m0, m1 := b[16:], b[pageSize+16:]
	m := m0
	if le.Uint64(m1[48:]) > le.Uint64(m0[48:]) {
		m = m1
	}
	return int(le.Uint64(m[16:]))
}

// needsCA tells the commands that read the CA record from those that work
// on the certificate records alone.
func needsCA(args []string) bool {
	switch args[0] {
	case "ls", "show", "backup", "check", "policy":
		return false
	case "token":
		return args[1] == "create"
	}
	return true
}
