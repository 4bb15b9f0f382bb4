package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// TestGateThroughput measures, in one run on one machine, GET
// /containers/json over mutual TLS (1 and 4 client loops) against the same
// dockerd directly on its own TLS listener (no plugin), through dockca gate
// (a process of its own, forwarding to that dockerd's unix socket), and
// against a second dockerd with the dockca authorization plugin; then the
// latency the gate adds, and a hijacked stream (docker exec writing 100 MB
// to stdout) through the gate and directly. The setups are measured in
// alternating windows so that drift on a shared machine hits all alike.
// It takes about two minutes, so it only runs with DOCKCA_GATE_BENCH=1:
//
//	DOCKCA_GATE_BENCH=1 go test -tags nobadger,nomysql,nopgx -count=1 -run GateThroughput -v ./cmd/dockca/
func TestGateThroughput(t *testing.T) {
	if os.Getenv("DOCKCA_GATE_BENCH") != "1" {
		t.Skip("set DOCKCA_GATE_BENCH=1 to measure the gate against dockerd's own TLS and the plugin")
	}
	dockerdtest.Require(t)
	bin := buildDockca(t)
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	r.ok("issue", "daemon", "127.0.0.1", "--out", filepath.Join(dir, "daemon"))
	r.ok("issue", "client", "ada", "--role", "admin", "--out", filepath.Join(dir, "ada"))
	dd := filepath.Join(dir, "daemon")
	tlsOpts := dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(dd, "ca.pem"),
		Cert: filepath.Join(dd, "server-cert.pem"), Key: filepath.Join(dd, "server-key.pem")}

	direct := dockerdtest.Start(t, tlsOpts)
	gateAddr := fmt.Sprintf("127.0.0.1:%d", dockerdtest.FreePort(t, "127.0.0.1"))
	gate := exec.Command(bin, "--home", r.home(), "gate", "--listen", gateAddr, "--docker", "unix://"+direct.Socket, "--cert-dir", dd)
	gate.Stderr = os.Stderr
	if err := gate.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gate.Process.Signal(os.Interrupt); gate.Wait() })
	waitTCP(t, gateAddr)

	plugin := exec.Command(bin, "--home", r.home(), "authz", "--name", "dockca-bench-"+fmt.Sprint(os.Getpid()))
	plugin.Stderr = os.Stderr
	if err := plugin.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plugin.Process.Signal(os.Interrupt); plugin.Wait() })
	waitForFile(t, "/run/docker/plugins/dockca-bench-"+fmt.Sprint(os.Getpid())+".sock")
	o := tlsOpts
	o.Args = []string{"--authorization-plugin=dockca-bench-" + fmt.Sprint(os.Getpid())}
	withPlugin := dockerdtest.Start(t, o)

	client := mtlsClient(t, filepath.Join(dir, "ada"), 8)
	setups := []struct{ name, addr string }{{"dockerd TLS", direct.Addr}, {"gate", gateAddr}, {"dockerd + plugin", withPlugin.Addr}}
	for _, loops := range []int{1, 4} {
		rate := map[string]float64{}
		lat := map[string][]time.Duration{}
		for round := 0; round < 4; round++ {
			for _, s := range setups {
				n, l := loop(t, client, s.addr, loops, 2*time.Second)
				rate[s.name] += n / 4
				lat[s.name] = append(lat[s.name], l...)
			}
		}
		for _, s := range setups {
			slices.Sort(lat[s.name])
		}
		q := func(s string, f float64) time.Duration { return lat[s][int(f*float64(len(lat[s])-1))] }
		t.Logf("GET /containers/json, %d loop(s): dockerd TLS %.0f req/s (p50 %s, p99 %s); gate %.0f req/s (p50 %s, p99 %s); dockerd + plugin %.0f req/s (p50 %s, p99 %s)",
			loops, rate["dockerd TLS"], q("dockerd TLS", .5), q("dockerd TLS", .99), rate["gate"], q("gate", .5), q("gate", .99),
			rate["dockerd + plugin"], q("dockerd + plugin", .5), q("dockerd + plugin", .99))
		t.Logf("  gate / dockerd TLS %.2f (target >= 0.9); gate / dockerd + plugin %.2f (target >= 3); added latency p50 %s, p99 %s (target p99 <= 1ms)",
			rate["gate"]/rate["dockerd TLS"], rate["gate"]/rate["dockerd + plugin"],
			q("gate", .5)-q("dockerd TLS", .5), q("gate", .99)-q("dockerd TLS", .99))
	}

	// A hijacked stream: 100 MB from docker exec's stdout.
	direct.ImportBusybox(t, "bb:1")
	if out, err := direct.Local(t, "run", "-d", "--network", "none", "--name", "streamer", "bb:1", "sleep", "1000"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	times := map[string][]time.Duration{}
	for round := 0; round < 5; round++ {
		for _, s := range setups[:2] {
			start := time.Now()
			cmd := exec.Command(dockerdtest.Require(t), "--tlsverify", "--tlscacert", filepath.Join(dir, "ada", "ca.pem"),
				"--tlscert", filepath.Join(dir, "ada", "cert.pem"), "--tlskey", filepath.Join(dir, "ada", "key.pem"), "-H", "tcp://"+s.addr,
				"exec", "streamer", "dd", "if=/dev/zero", "bs=1048576", "count=100")
			cmd.Env = dockerdtest.CleanEnv("DOCKER_CONFIG=" + t.TempDir())
			n, err := countOutput(cmd)
			if err != nil || n != 100<<20 {
				t.Fatalf("%s: exec stream: %v, %d bytes", s.name, err, n)
			}
			times[s.name] = append(times[s.name], time.Since(start))
		}
	}
	med := func(s string) time.Duration { slices.Sort(times[s]); return times[s][len(times[s])/2] }
	t.Logf("docker exec writing 100 MB to stdout: dockerd TLS %s, gate %s (median of 5); gate / dockerd TLS time %.2f (target <= 1.10)",
		med("dockerd TLS"), med("gate"), float64(med("gate"))/float64(med("dockerd TLS")))
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s", addr)
		}
	}
}

// mtlsClient is an HTTPS client with the certificate in dir (the
// DOCKER_CERT_PATH layout), keeping at most idle connections alive.
func mtlsClient(t *testing.T, dir string, idle int) *http.Client {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: idle,
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, MinVersion: tls.VersionTLS12}}}
}

// loop runs loops client loops of GET /containers/json against addr for
// window and returns requests/s and every request's latency.
func loop(t *testing.T, c *http.Client, addr string, loops int, window time.Duration) (float64, []time.Duration) {
	t.Helper()
	url := "https://" + addr + "/v1.41/containers/json"
	get := func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: status %s", addr, resp.Status)
		}
		return nil
	}
	for i := 0; i < 20; i++ {
		if err := get(); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(window)
	for w := 0; w < loops; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				start := time.Now()
				if err := get(); err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(len(all)) / window.Seconds(), all
}

func countOutput(cmd *exec.Cmd) (int64, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() { <-ctx.Done(); _ = cmd.Process.Kill() }()
	n, _ := io.Copy(io.Discard, out)
	return n, cmd.Wait()
}
