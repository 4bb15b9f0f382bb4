package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/etcdtest"
	"github.com/dockca/dockca/internal/servetest"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// TestEtcdStoreEveryCommand: the admin commands on an etcd store, a
// backup of it that works as a bbolt home, and store copy both ways.
func TestEtcdStoreEveryCommand(t *testing.T) {
	cluster := etcdtest.Start(t, nil)
	url := cluster.URL("dockca/cmds")
	home := t.TempDir()
	vars := map[string]string{"DOCKCA_HOME": home}
	runOK := func(args ...string) string {
		t.Helper()
		out, errOut, code := svcRun(t, vars, append([]string{"--store", url}, args...)...)
		if code != 0 {
			t.Fatalf("dockca %v: exit %d\n%s%s", args, code, out, errOut)
		}
		return out
	}
	out := runOK("init", "--no-password", "--name", "etcd-ca")
	if !strings.Contains(out, url) {
		t.Fatalf("init does not say where the CA is: %q", out)
	}
	if _, err := os.Stat(filepath.Join(home, store.FileName)); !os.IsNotExist(err) {
		t.Fatalf("init on etcd left a database in the home: %v", err)
	}
	if _, errOut, code := svcRun(t, vars, "--store", url, "init", "--no-password"); code != 1 || !strings.Contains(errOut, "already holds") {
		t.Fatalf("second init: exit %d, %q", code, errOut)
	}
	runOK("issue", "client", "alice", "--role", "operator", "--out", filepath.Join(home, "alice"))
	runOK("issue", "daemon", "host1", "--san", "127.0.0.1", "--out", filepath.Join(home, "host1"))
	runOK("token", "create", "--kind", "client", "--ca-url", "https://127.0.0.1:8443", "bob")
	runOK("revoke", "alice")
	var listed []map[string]any
	if err := json.Unmarshal([]byte(runOK("ls", "--json")), &listed); err != nil || len(listed) != 2 {
		t.Fatalf("ls --json: %d rows (%v)", len(listed), err)
	}
	if out := runOK("show", "alice"); !strings.Contains(out, "revoked") {
		t.Fatalf("show alice after revoke: %q", out)
	}
	if out := runOK("token", "ls"); !strings.Contains(out, "bob") {
		t.Fatalf("token ls: %q", out)
	}
	runOK("check")
	crl := filepath.Join(home, "crl.pem")
	runOK("crl", "--pem", "--out", crl)
	if b, _ := os.ReadFile(crl); !strings.Contains(string(b), "BEGIN X509 CRL") {
		t.Fatalf("crl: %q", b)
	}

	// A backup of an etcd store is a bbolt file that works as a home.
	bk := filepath.Join(t.TempDir(), "bk")
	if err := os.MkdirAll(bk, 0o700); err != nil {
		t.Fatal(err)
	}
	runOK("backup", filepath.Join(bk, store.FileName))
	out, errOut, code := svcRun(t, map[string]string{"DOCKCA_HOME": bk}, "ls", "-q")
	if code != 0 || len(strings.Fields(out)) != 2 {
		t.Fatalf("ls on the backup: exit %d, %q %s", code, out, errOut)
	}

	// store copy: etcd -> bolt -> another etcd prefix; the same CA.
	boltCopy := filepath.Join(t.TempDir(), "copy.db")
	out = runOK("store", "copy", "--from", url, "--to", "bolt:"+boltCopy)
	if !strings.Contains(out, "2 certificates, 1 revocations, 1 tokens") || !strings.Contains(out, "same CRL") {
		t.Fatalf("store copy says: %q", out)
	}
	url2 := cluster.URL("dockca/copied")
	runOK("store", "copy", "--from", "bolt:"+boltCopy, "--to", url2)
	a := runOK("ls", "--json")
	b, errOut, code := svcRun(t, vars, "--store", url2, "ls", "--json")
	if code != 0 || a != b {
		t.Fatalf("ls differs after copying back (exit %d %s):\n%s\n%s", code, errOut, a, b)
	}
	// The source is unchanged and a copy into a used store is refused.
	_, errOut, code = svcRun(t, vars, "--store", url, "store", "copy", "--from", "bolt:"+boltCopy, "--to", url2)
	if code != 1 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("copy into a used store: exit %d, %q", code, errOut)
	}
	// Bad URLs are usage errors that quote the input.
	for _, bad := range []string{"etcd://127.0.0.1:1", "etcd://nohost/p", "mysql://x", "bolt:"} {
		_, errOut, code := svcRun(t, vars, "--store", bad, "ls")
		if code != 2 || !strings.Contains(errOut, fmt.Sprintf("%q", bad)) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("--store %q: exit %d, %q", bad, code, errOut)
		}
	}
	// An unreachable etcd is one clear error, exit 1, quickly.
	start := time.Now()
	_, errOut, code = svcRun(t, vars, "--store", "etcd://127.0.0.1:9/x", "ls")
	if code != 1 || !strings.Contains(errOut, "etcd") || time.Since(start) > 15*time.Second {
		t.Errorf("unreachable etcd: exit %d after %s, %q", code, time.Since(start), errOut)
	}
}

// startReplicas starts n dockca serve processes on one etcd store, all at
// once (so that their first-start initialisations race), and checks they
// serve one CA.
func startReplicas(t *testing.T, bin, url string, n int, serveArgs ...string) []*servetest.Service {
	t.Helper()
	reps := make([]*servetest.Service, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i] = servetest.StartWith(t, bin, servetest.Options{Store: url, Args: serveArgs})
		}()
	}
	wg.Wait()
	for _, r := range reps {
		if r == nil {
			t.FailNow()
		}
		if r.FP != reps[0].FP {
			t.Fatalf("replicas serve different CAs: %s and %s", reps[0].FP, r.FP)
		}
	}
	return reps
}

// TestReplicasOnEtcd: three replicas initialised at once serve one CA; a
// token used 50 times at once across them buys exactly one certificate; a
// revocation through one replica is in every replica's CRL within a
// second, and CRL numbers only grow across replicas.
func TestReplicasOnEtcd(t *testing.T) {
	bin := buildDockca(t)
	cluster := etcdtest.Start(t, nil)
	url := cluster.URL("dockca/replicas")
	reps := startReplicas(t, bin, url, 3)
	ctx := context.Background()
	clients := replicaClients(t, reps)

	tok := reps[1].Token(t, "--kind", "client", "racer")
	var wins atomic.Int32
	var serial atomic.Value
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := clients[i%3].Enroll(ctx, tok, "")
			if err == nil {
				wins.Add(1)
				serial.Store(res.Leaf.SerialNumber)
				return
			}
			if !strings.Contains(err.Error(), "already been used") {
				t.Errorf("enrollment %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("50 uses of one token over 3 replicas bought %d certificates, want 1", wins.Load())
	}
	sn := serial.Load().(*big.Int)

	before := make([]*big.Int, len(clients))
	for i, c := range clients {
		crl, err := c.CRL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before[i] = crl.Number
	}
	// Revoke through replica 2's admin socket.
	out, err := execOut(bin, "--home", reps[2].Home, "--store", url, "revoke", pki.FormatSerial(sn))
	if err != nil {
		t.Fatalf("revoke through replica 2: %v\n%s", err, out)
	}
	revokedAt := time.Now()
	seen := make([]time.Duration, len(clients))
	for i, c := range clients {
		for {
			crl, err := c.CRL(ctx)
			if err != nil {
				t.Fatal(err)
			}
			listed := false
			for _, e := range crl.RevokedCertificateEntries {
				listed = listed || e.SerialNumber.Cmp(sn) == 0
			}
			if listed {
				seen[i] = time.Since(revokedAt)
				if crl.Number.Cmp(before[i]) <= 0 {
					t.Errorf("replica %d: CRL number %v after the revocation, %v before", i, crl.Number, before[i])
				}
				break
			}
			if time.Since(revokedAt) > time.Second {
				t.Fatalf("replica %d does not list the revocation after 1 s", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("revocation in every replica's CRL after %v", seen)
	// Numbers across replicas: one number, one content.
	byNumber := map[string]int{}
	for _, c := range clients {
		crl, err := c.CRL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := len(crl.RevokedCertificateEntries)
		if prev, ok := byNumber[crl.Number.String()]; ok && prev != n {
			t.Errorf("two CRLs numbered %v list %d and %d revocations", crl.Number, prev, n)
		}
		byNumber[crl.Number.String()] = n
	}
}

// replicaClients is a service client of each replica.
func replicaClients(t *testing.T, reps []*servetest.Service) []*enroll.Client {
	t.Helper()
	clients := make([]*enroll.Client, len(reps))
	for i, r := range reps {
		c, err := enroll.Bootstrap(context.Background(), []string{r.URL}, r.FP)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	return clients
}

func execOut(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// TestReplicasSurviveKills: three replicas under enrollment load; one
// replica and one etcd member are killed with SIGKILL midway. Every
// certificate a client got is in the store, no serial is stored twice, no
// token bought two certificates, and the survivors keep serving.
func TestReplicasSurviveKills(t *testing.T) {
	bin := buildDockca(t)
	cluster := etcdtest.Start(t, nil)
	url := cluster.URL("dockca/kill")
	reps := startReplicas(t, bin, url, 3, "--sign-rate", "100000", "--sign-burst", "100000")
	ctx := context.Background()
	clients := replicaClients(t, reps)
	const tokens = 240
	var names []string
	for i := range tokens {
		names = append(names, fmt.Sprintf("load-%03d", i))
	}
	out, err := execOut(bin, append([]string{"--home", reps[0].Home, "--store", url, "token", "create", "--kind", "client", "--json"}, names...)...)
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	var minted []struct{ Name, Token string }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &minted); err != nil || len(minted) != tokens {
		t.Fatalf("minted %d tokens (%v)", len(minted), err)
	}

	var acked sync.Map // serial hex -> token name
	var ackCount, failures atomic.Int32
	var killed atomic.Bool
	work := make(chan int)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				// Try each replica in turn, as a client with the
				// replicas' URLs would; a dead one is skipped.
				for attempt := range 6 {
					c := clients[(i+w+attempt)%3]
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					res, err := c.Enroll(cctx, minted[i].Token, "")
					cancel()
					if err == nil {
						if prev, dup := acked.LoadOrStore(pki.FormatSerial(res.Leaf.SerialNumber), minted[i].Name); dup {
							t.Errorf("serial %s handed out twice (%v, %s)", res.Leaf.SerialNumber, prev, minted[i].Name)
						}
						ackCount.Add(1)
						break
					}
					if strings.Contains(err.Error(), "already been used") {
						// A commit whose answer was lost: the
						// token was spent; the certificate is
						// stored but this client never got it.
						failures.Add(1)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	go func() {
		for i := range tokens {
			if i == tokens/3 {
				reps[2].Kill()
				cluster.Members[0].Kill()
				killed.Store(true)
			}
			work <- i
		}
		close(work)
	}()
	wg.Wait()
	if !killed.Load() {
		t.Fatal("the kills did not happen")
	}
	t.Logf("%d certificates acknowledged, %d tokens spent without an answer, of %d", ackCount.Load(), failures.Load(), tokens)
	if ackCount.Load() < tokens*3/4 {
		t.Fatalf("only %d of %d enrollments succeeded with two replicas and two etcd members left", ackCount.Load(), tokens)
	}

	// Every acknowledged certificate is stored, once.
	lsOut, err := execOut(bin, "--home", reps[0].Home, "--store", url, "ls", "--json")
	if err != nil {
		t.Fatalf("ls: %v\n%s", err, lsOut)
	}
	var stored []struct {
		Serial string `json:"serial"`
		Name   string `json:"name"`
	}
	if err := json.Unmarshal([]byte(lsOut), &stored); err != nil {
		t.Fatal(err)
	}
	bySerial := map[string]string{}
	perName := map[string]int{}
	for _, c := range stored {
		if _, dup := bySerial[c.Serial]; dup {
			t.Errorf("serial %s stored twice", c.Serial)
		}
		bySerial[c.Serial] = c.Name
		if strings.HasPrefix(c.Name, "load-") {
			perName[c.Name]++
		}
	}
	lost := 0
	acked.Range(func(k, v any) bool {
		if bySerial[k.(string)] != v.(string) {
			lost++
		}
		return true
	})
	if lost > 0 {
		t.Fatalf("%d acknowledged certificates are not in the store", lost)
	}
	for name, n := range perName {
		if n > 1 {
			t.Errorf("token for %s bought %d certificates", name, n)
		}
	}
	// The survivors keep serving: a new enrollment on each.
	for i, c := range clients[:2] {
		tok := reps[i].Token(t, "--kind", "client", fmt.Sprintf("after-%d", i))
		if _, err := c.Enroll(ctx, tok, ""); err != nil {
			t.Errorf("replica %d after the kills: %v", i, err)
		}
	}
	if _, err := clients[2].Enroll(ctx, "x", ""); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("the killed replica still answers: %v", err)
	}
}

// TestEtcdOverTLS: an etcd cluster that requires client certificates;
// dockca reaches it with --etcd-cacert/--etcd-cert/--etcd-key (and the
// DOCKCA_ETCD_* variables), and without them is refused with one line.
func TestEtcdOverTLS(t *testing.T) {
	// The cluster's certificates come from a throwaway dockca CA: a
	// daemon (server) certificate for 127.0.0.1, a client certificate.
	pki := t.TempDir()
	certs := map[string]string{"DOCKCA_HOME": filepath.Join(pki, "ca")}
	for _, args := range [][]string{
		{"init", "--no-password", "--name", "etcd-pki"},
		{"issue", "daemon", "127.0.0.1", "--out", filepath.Join(pki, "server")},
		{"issue", "client", "dockca", "--out", filepath.Join(pki, "client")},
	} {
		if out, errOut, code := svcRun(t, certs, args...); code != 0 {
			t.Fatalf("%v: %s%s", args, out, errOut)
		}
	}
	cluster := etcdtest.Start(t, &etcdtest.Options{TLS: &etcdtest.TLS{
		CA: filepath.Join(pki, "server", "ca.pem"), Cert: filepath.Join(pki, "server", "server-cert.pem"), Key: filepath.Join(pki, "server", "server-key.pem"),
		ClientCert: filepath.Join(pki, "client", "cert.pem"), ClientKey: filepath.Join(pki, "client", "key.pem"),
	}})
	url := cluster.URL("tls")
	home := t.TempDir()
	vars := map[string]string{"DOCKCA_HOME": home}
	tlsFlags := []string{"--etcd-cacert", filepath.Join(pki, "client", "ca.pem"),
		"--etcd-cert", filepath.Join(pki, "client", "cert.pem"), "--etcd-key", filepath.Join(pki, "client", "key.pem")}
	args := func(more ...string) []string { return append(append([]string{"--store", url}, tlsFlags...), more...) }
	if out, errOut, code := svcRun(t, vars, args("init", "--no-password")...); code != 0 {
		t.Fatalf("init over TLS: %s%s", out, errOut)
	}
	if out, errOut, code := svcRun(t, vars, args("issue", "client", "alice", "--out", filepath.Join(home, "alice"))...); code != 0 {
		t.Fatalf("issue over TLS: %s%s", out, errOut)
	}
	// Without a client certificate etcd refuses, and dockca says so in
	// one line, exit 1, in bounded time.
	start := time.Now()
	_, errOut, code := svcRun(t, vars, "--store", url, "--etcd-cacert", tlsFlags[1], "ls")
	if code != 1 || !strings.Contains(errOut, "etcd") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || time.Since(start) > 20*time.Second {
		t.Fatalf("no client certificate: exit %d after %s, %q", code, time.Since(start), errOut)
	}
	// --etcd-cert without --etcd-key is a usage error.
	if _, errOut, code := svcRun(t, vars, "--store", url, "--etcd-cert", tlsFlags[3], "ls"); code != 2 {
		t.Fatalf("--etcd-cert alone: exit %d, %q", code, errOut)
	}
	// The environment variables do the same.
	env := map[string]string{"DOCKCA_HOME": home, "DOCKCA_STORE": url,
		"DOCKCA_ETCD_CACERT": tlsFlags[1], "DOCKCA_ETCD_CERT": tlsFlags[3], "DOCKCA_ETCD_KEY": tlsFlags[5]}
	out, errOut, code := svcRunEnvFlags(t, env, "ls", "-q")
	if code != 0 || len(strings.Fields(out)) != 1 {
		t.Fatalf("ls with DOCKCA_ETCD_*: exit %d %q %s", code, out, errOut)
	}
}

// svcRunEnvFlags is svcRun with the flags left to the environment (the
// urfave EnvVars of the global flags read it through os.Getenv, so they
// are set for the call).
func svcRunEnvFlags(t *testing.T, vars map[string]string, args ...string) (string, string, int) {
	t.Helper()
	for k, v := range vars {
		if k != "DOCKCA_HOME" {
			t.Setenv(k, v)
		}
	}
	return svcRun(t, vars, args...)
}

// TestRotateOnEtcd: a root rotation of a CA stored in etcd, with the same
// commands as on bbolt: both roots in the bundle during the overlap,
// status listing what depends on the old root, finish refused and then
// forced, every generation's keys checking out.
func TestRotateOnEtcd(t *testing.T) {
	cluster := etcdtest.Start(t, nil)
	url := cluster.URL("dockca/rotate")
	dir := t.TempDir()
	vars := map[string]string{"DOCKCA_HOME": filepath.Join(dir, "home"), "DOCKCA_PASSWORD": "rotate-on-etcd-pw"}
	ok := func(args ...string) string {
		t.Helper()
		out, errOut, code := svcRun(t, vars, append([]string{"--store", url}, args...)...)
		if code != 0 {
			t.Fatalf("dockca %v: exit %d\n%s%s", args, code, out, errOut)
		}
		return out
	}
	ok("init")
	ok("issue", "client", "alice", "--out", filepath.Join(dir, "alice"))
	ok("rotate", "root", "--overlap", "10d")
	ok("issue", "client", "bob", "--out", filepath.Join(dir, "bob"))
	if b, _ := os.ReadFile(filepath.Join(dir, "bob", "ca.pem")); strings.Count(string(b), "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("ca.pem during the overlap on etcd: %s", b)
	}
	if status := ok("rotate", "status"); !strings.Contains(status, "alice") || strings.Contains(status, "bob") {
		t.Fatalf("rotate status on etcd:\n%s", status)
	}
	if _, errOut, code := svcRun(t, vars, "--store", url, "rotate", "finish"); code != 1 || !strings.Contains(errOut, "alice") {
		t.Fatalf("finish with a dependent: exit %d %q", code, errOut)
	}
	ok("rotate", "finish", "--force")
	if out := ok("check"); !strings.Contains(out, "No problems found") {
		t.Fatalf("check after rotating on etcd:\n%s", out)
	}
	ok("issue", "client", "carol", "--out", filepath.Join(dir, "carol"))
	if b, _ := os.ReadFile(filepath.Join(dir, "carol", "ca.pem")); strings.Count(string(b), "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("ca.pem after finish on etcd: %s", b)
	}
}

// TestReplicasFollowRotation: replicas on one etcd store follow a root
// rotation and its finish made from another host, without a restart:
// within a few seconds each serves both roots, presents a service
// certificate of the new generation that clients of either root accept,
// and issues from the new intermediate; after finish, the new root alone.
// A revocation source over both replicas' URLs follows the roots too.
func TestReplicasFollowRotation(t *testing.T) {
	bin := buildDockca(t)
	cluster := etcdtest.Start(t, nil)
	url := cluster.URL("dockca/follow")
	reps := startReplicas(t, bin, url, 2)
	clients := replicaClients(t, reps)
	ctx := context.Background()
	oldRoot := clients[0].Root()
	elsewhere := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := execOut(bin, append([]string{"--home", elsewhere, "--store", url}, args...)...); err != nil {
			t.Fatalf("dockca %v: %v\n%s", args, err, out)
		}
	}
	// follow waits until every replica serves exactly want roots and
	// presents a service certificate that each of them verifies alone.
	follow := func(step string, want int) []*x509.Certificate {
		t.Helper()
		start := time.Now()
		var roots []*x509.Certificate
		for i, r := range reps {
			for {
				roots = servedRoots(t, r.URL)
				chain := servedChain(t, r.URL)
				fresh := len(roots) == want
				for _, root := range roots {
					fresh = fresh && verifies(chain[0], chain[1:], root, x509.ExtKeyUsageServerAuth)
				}
				if fresh {
					break
				}
				if time.Since(start) > 20*time.Second {
					t.Fatalf("%s: replica %d still serves %d roots and a service certificate of the old generation after 20 s\n%s", step, i, len(roots), r.Logs())
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		t.Logf("%s: every replica followed within %v", step, time.Since(start).Round(time.Millisecond))
		return roots
	}
	// enrollUnder enrolls a client through every replica (its client
	// verifying the service and the answer) and checks that
	// its certificate verifies under root alone, with the chain it got.
	enrollUnder := func(step string, root *x509.Certificate, chainLen int) {
		t.Helper()
		for i, r := range reps {
			res, err := clients[i].Enroll(ctx, r.Token(t, "--kind", "client", fmt.Sprintf("%s-%d", step, i)), "")
			if err != nil {
				t.Fatalf("%s: enrollment through replica %d: %v", step, i, err)
			}
			chain, err := tlsbundle.Certs([]byte(res.Resp.Chain))
			if err != nil || len(chain) != chainLen {
				t.Fatalf("%s: replica %d's chain: %d certificates (want %d), %v", step, i, len(chain), chainLen, err)
			}
			if !verifies(res.Leaf, chain[1:], root, x509.ExtKeyUsageClientAuth) {
				t.Fatalf("%s: the certificate from replica %d does not chain to %s alone", step, i, root.Subject.CommonName)
			}
		}
	}

	// A remote plugin's or gate's revocation source over both replicas
	// (authz --ca-url URL1,URL2) follows the roots as well.
	both, err := enroll.Bootstrap(ctx, []string{reps[0].URL, reps[1].URL}, reps[0].FP)
	if err != nil {
		t.Fatal(err)
	}
	issuers, err := both.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src, err := authz.NewCRLSource(authz.CRLOptions{URLs: both.URLs(), Failover: both.Failover, Root: both.Root(),
		Issuers: issuers, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	refresh := func(step string, want ...*x509.Certificate) {
		t.Helper()
		if err := src.Refresh(ctx); err != nil {
			t.Fatalf("%s: the two-URL revocation source: %v", step, err)
		}
		got := src.Roots()
		ok := len(got) == len(want)
		for _, w := range want {
			ok = ok && slices.ContainsFunc(got, w.Equal)
		}
		if !ok {
			t.Fatalf("%s: the two-URL revocation source trusts %d roots, want %d", step, len(got), len(want))
		}
	}
	refresh("before", oldRoot)

	run("rotate", "root", "--overlap", "10d")
	roots := follow("rotate root", 2)
	var newRoot *x509.Certificate
	for _, r := range roots {
		if !r.Equal(oldRoot) {
			newRoot = r
		}
	}
	if newRoot == nil {
		t.Fatal("rotate root: the replicas serve no new root")
	}
	enrollUnder("overlap", newRoot, 3) // leaf, new intermediate, its cross-signed twin
	refresh("rotate root", oldRoot, newRoot)
	run("rotate", "finish")
	if roots := follow("rotate finish", 1); !roots[0].Equal(newRoot) {
		t.Fatalf("rotate finish: the replicas serve %s, not the new root", roots[0].Subject.CommonName)
	}
	// Clients that took the new bundle during the overlap (as every
	// renewal does) trust the new root alone now.
	for i, r := range reps {
		c, err := enroll.NewWithRoots([]string{r.URL}, []*x509.Certificate{newRoot})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	enrollUnder("finished", newRoot, 2)
	// With the first replica gone, the source fails over to the second,
	// which it now verifies under the new root alone.
	reps[0].Kill()
	refresh("rotate finish, first replica killed", newRoot)
}

// servedRoots is the trust bundle a service hands out (GET /v1/roots).
func servedRoots(t *testing.T, base string) []*x509.Certificate {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // only the content is judged here
	resp, err := c.Get(base + api.PathRoots)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	roots, err := tlsbundle.Certs(b)
	if err != nil {
		t.Fatalf("%s%s: %v", base, api.PathRoots, err)
	}
	return roots
}

// servedChain is the certificate chain a service presents in its handshake.
func servedChain(t *testing.T, base string) []*x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{InsecureSkipVerify: true}) // verified by the caller
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates
}

func verifies(leaf *x509.Certificate, presented []*x509.Certificate, root *x509.Certificate, usage x509.ExtKeyUsage) bool {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range presented {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err == nil
}
