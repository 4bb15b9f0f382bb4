package examples

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/internal/etcdtest"
	"github.com/dockca/dockca/internal/servetest"
)

// TestReplicaUnitAsWritten runs replicas/dockca-replica.service's
// ExecStart, with its Environment and its password credential, twice (two
// replicas, each with its own home) against a real 3-member etcd, and the
// store copy line its comments document. Only the placeholders change: the
// etcd members' addresses become the test cluster's, the listen address
// and public URL become loopback ports, the binary path the one built
// here. Both replicas must serve one CA, a token minted through one must
// enroll at the other, and the copied CA must be served as it was.
func TestReplicaUnitAsWritten(t *testing.T) {
	bin := buildDockca(t)
	cluster := etcdtest.Start(t, nil)
	unitPath := filepath.Join("replicas", "dockca-replica.service")
	u := parseService(t, unitPath)
	placeholder := "10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379"
	if !strings.HasPrefix(u.ExecStart, "/usr/local/bin/dockca ") || u.LoadCredential == "" {
		t.Fatalf("unexpected unit: %+v", u)
	}
	dir := dockerdtest.ShortTempDir(t)
	credID, _, _ := strings.Cut(u.LoadCredential, ":")
	creds := filepath.Join(dir, "credentials")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, credID), []byte("replica-unit-password"), 0o400); err != nil {
		t.Fatal(err)
	}
	type replica struct{ home, url, fp string }
	// The replicas' public names differ (localhost and 127.0.0.1), as
	// ca1.example.com and ca2.example.com would.
	start := func(name, host string) replica {
		port := dockerdtest.FreePort(t, "127.0.0.1")
		r := replica{home: filepath.Join(dir, name), url: fmt.Sprintf("https://%s:%d", host, port)}
		env := append(dockerdtest.CleanEnv(), "CREDENTIALS_DIRECTORY="+creds)
		sawStore := false
		for _, e := range u.Environment {
			k, v, _ := strings.Cut(e, "=")
			switch k {
			case "DOCKCA_HOME":
				v = r.home
			case "DOCKCA_STORE":
				if !strings.Contains(v, placeholder) {
					t.Fatalf("DOCKCA_STORE %q does not name the documented members", v)
				}
				v = strings.Replace(v, placeholder, cluster.Endpoints(), 1)
				sawStore = true
			case "DOCKCA_LISTEN":
				v = fmt.Sprintf("127.0.0.1:%d", port)
			case "DOCKCA_ADDRESS":
				v = r.url
			}
			env = append(env, k+"="+v)
		}
		if !sawStore {
			t.Fatal("the unit sets no DOCKCA_STORE")
		}
		line := strings.Replace(u.ExecStart, "/usr/local/bin/dockca", bin, 1)
		line = strings.ReplaceAll(line, "${CREDENTIALS_DIRECTORY}", creds)
		cmd := exec.Command("sh", "-c", "exec "+line)
		cmd.Env = env
		svc := servetest.Run(t, cmd, &servetest.Service{Bin: bin, Home: r.home})
		if svc.URL != r.url {
			t.Fatalf("replica %s serves %s, want the unit's DOCKCA_ADDRESS %s", name, svc.URL, r.url)
		}
		r.fp = svc.FP
		return r
	}
	a := start("ca1", "localhost")
	b := start("ca2", "127.0.0.1")
	if a.fp != b.fp {
		t.Fatalf("the replicas serve different CAs: %s and %s", a.fp, b.fp)
	}
	storeURL := "etcd://" + cluster.Endpoints() + "/dockca"
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(dockerdtest.CleanEnv(), "DOCKCA_PASSWORD=replica-unit-password")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dockca %v: %v\n%s%s", args, err, out, stderr.String())
		}
		return string(out)
	}
	// Minted through replica 1 (its admin socket), for replica 1's URL,
	// spent at replica 2: a token belongs to the CA, not to one replica.
	token := strings.TrimSpace(run("--home", a.home, "--store", storeURL, "token", "create", "--kind", "client", "alice"))
	out := run("--home", filepath.Join(dir, "laptop"), "enroll", "--ca-url", b.url, "--fingerprint", a.fp, "--token", token, "--cert-dir", filepath.Join(dir, "alice"))
	if !strings.Contains(out, "alice") {
		t.Fatalf("enroll at the second replica: %s", out)
	}

	// The documented store copy line, from a bbolt CA into a new prefix.
	var copyLine string
	for _, c := range commentLines(t, unitPath) {
		if strings.HasPrefix(c, "dockca store copy ") {
			copyLine = c
		}
	}
	if copyLine == "" {
		t.Fatal("the unit documents no store copy line")
	}
	old := filepath.Join(dir, "old")
	run("--home", old, "init", "--no-password", "--name", "moved-ca")
	run("--home", old, "issue", "client", "bob", "--out", filepath.Join(dir, "bob"))
	line := strings.NewReplacer("/var/lib/dockca/dockca.db", filepath.Join(old, "dockca.db"), placeholder, cluster.Endpoints(), "/dockca", "/moved").Replace(copyLine)
	args := strings.Fields(line)[1:]
	out = run(args...)
	if !strings.Contains(out, "1 certificates") {
		t.Fatalf("store copy said: %s", out)
	}
	movedURL := "etcd://" + cluster.Endpoints() + "/moved"
	if out := run("--home", filepath.Join(dir, "any"), "--store", movedURL, "ls"); !strings.Contains(out, "bob") {
		t.Fatalf("ls on the copied CA: %s", out)
	}
}
