package main

import (
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// TestGateThroughput measures, in one run on one machine, GET
// /containers/json over mutual TLS (1 and 4 client loops) against the same
// dockerd directly on its own TLS listener (no plugin), through dockca gate
// (a process of its own, forwarding to that dockerd's unix socket), and
// against a second dockerd with the dockca authorization plugin, and through
// a blind TLS-to-unix relay (the floor any front door process has); then the
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

	// The floor: a blind relay, a process of its own that terminates the
	// same mutual TLS and copies bytes to and from dockerd's unix socket,
	// with no parsing, no judging and no revocation check. No front door
	// of this shape can be faster; measured in the same run, it shows what
	// the extra hop itself costs on this machine.
	relayAddr := fmt.Sprintf("127.0.0.1:%d", dockerdtest.FreePort(t, "127.0.0.1"))
	relay := exec.Command(os.Args[0], "-test.run=^TestBlindRelayProcess$")
	relay.Env = append(os.Environ(), "DOCKCA_BENCH_RELAY="+relayAddr+","+direct.Socket+","+dd)
	relay.Stderr = os.Stderr
	if err := relay.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Process.Kill(); relay.Wait() })
	waitTCP(t, relayAddr)

	client := mtlsClient(t, filepath.Join(dir, "ada"), 8)
	// CPU time is read per process from /proc, so that what each hop costs
	// is visible: the client (this process), the gate, each dockerd, the
	// plugin.
	procs := map[string]int{"client": os.Getpid(), "gate": gate.Process.Pid, "plugin": plugin.Process.Pid,
		"dockerd": direct.Pid(), "dockerd (plugin)": withPlugin.Pid(), "relay": relay.Process.Pid}
	setups := []struct {
		name, addr string
		procs      []string
	}{
		{"dockerd TLS", direct.Addr, []string{"client", "dockerd"}},
		{"gate", gateAddr, []string{"client", "gate", "dockerd"}},
		{"dockerd + plugin", withPlugin.Addr, []string{"client", "dockerd (plugin)", "plugin"}},
		{"blind relay", relayAddr, []string{"client", "relay", "dockerd"}},
	}
	rounds, window := benchRounds(t)
	for _, loops := range []int{1, 4} {
		rates := map[string][]float64{}
		lat := map[string][]time.Duration{}
		cpu := map[string]map[string]time.Duration{}
		reqs := map[string]float64{}
		for round := 0; round < rounds; round++ {
			for _, s := range setups {
				before := cpuTimes(t, procs, s.procs)
				n, l := loop(t, client, s.addr, loops, window)
				after := cpuTimes(t, procs, s.procs)
				rates[s.name] = append(rates[s.name], n)
				lat[s.name] = append(lat[s.name], l...)
				reqs[s.name] += float64(len(l))
				if cpu[s.name] == nil {
					cpu[s.name] = map[string]time.Duration{}
				}
				for p := range after {
					cpu[s.name][p] += after[p] - before[p]
				}
			}
		}
		for _, s := range setups {
			slices.Sort(lat[s.name])
		}
		q := func(s string, f float64) time.Duration { return lat[s][int(f*float64(len(lat[s])-1))] }
		ratio := func(a, b string) []float64 {
			var r []float64
			for i := range rates[a] {
				r = append(r, rates[a][i]/rates[b][i])
			}
			return r
		}
		t.Logf("GET /containers/json, %d loop(s), %d rounds of %s each, interleaved (median req/s [min-max]; p50, p99 over all rounds; CPU µs per request per process):",
			loops, rounds, window)
		for _, s := range setups {
			var parts []string
			total := 0.0
			for _, p := range s.procs {
				us := float64(cpu[s.name][p].Microseconds()) / reqs[s.name]
				total += us
				parts = append(parts, fmt.Sprintf("%s %.0f", p, us))
			}
			t.Logf("  %-16s %s req/s; p50 %s, p99 %s; CPU µs/req: %s (total %.0f)", s.name, spread(rates[s.name], "%.0f"),
				q(s.name, .5).Round(time.Microsecond), q(s.name, .99).Round(time.Microsecond), strings.Join(parts, ", "), total)
		}
		t.Logf("  gate / dockerd TLS %s (target >= 0.9); gate / dockerd + plugin %s (target >= 3); added latency p50 %s, p99 %s (target p99 <= 1ms)",
			spread(ratio("gate", "dockerd TLS"), "%.2f"), spread(ratio("gate", "dockerd + plugin"), "%.2f"),
			(q("gate", .5) - q("dockerd TLS", .5)).Round(time.Microsecond), (q("gate", .99) - q("dockerd TLS", .99)).Round(time.Microsecond))
		t.Logf("  the floor: blind relay / dockerd TLS %s; blind relay / dockerd + plugin %s; gate / blind relay %s; latency the relay adds p50 %s, p99 %s",
			spread(ratio("blind relay", "dockerd TLS"), "%.2f"), spread(ratio("blind relay", "dockerd + plugin"), "%.2f"), spread(ratio("gate", "blind relay"), "%.2f"),
			(q("blind relay", .5) - q("dockerd TLS", .5)).Round(time.Microsecond), (q("blind relay", .99) - q("dockerd TLS", .99)).Round(time.Microsecond))
	}
	if os.Getenv("DOCKCA_GATE_BENCH_STREAM") == "0" {
		return
	}

	// A hijacked stream: 100 MB from docker exec's stdout.
	direct.ImportBusybox(t, "bb:1")
	if out, err := direct.Local(t, "run", "-d", "--network", "none", "--name", "streamer", "bb:1", "sleep", "1000"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	times := map[string][]time.Duration{}
	streamCPU := map[string]time.Duration{}
	for round := 0; round < 5; round++ {
		for _, s := range setups[:2] {
			before := cpuTimes(t, procs, s.procs)
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
			after := cpuTimes(t, procs, s.procs)
			for p := range after {
				streamCPU[s.name+" "+p] += (after[p] - before[p]) / 5
			}
		}
	}
	med := func(s string) time.Duration {
		slices.Sort(times[s])
		return times[s][len(times[s])/2].Round(time.Millisecond)
	}
	t.Logf("docker exec writing 100 MB to stdout (median of 5): dockerd TLS %s [%s-%s], gate %s [%s-%s]; gate / dockerd TLS time %.2f (target <= 1.10)",
		med("dockerd TLS"), times["dockerd TLS"][0].Round(time.Millisecond), times["dockerd TLS"][4].Round(time.Millisecond),
		med("gate"), times["gate"][0].Round(time.Millisecond), times["gate"][4].Round(time.Millisecond),
		float64(med("gate"))/float64(med("dockerd TLS")))
	t.Logf("  CPU per stream (mean; the client is the docker CLI, not counted): dockerd TLS: dockerd %s; gate: gate %s, dockerd %s",
		streamCPU["dockerd TLS dockerd"].Round(time.Millisecond), streamCPU["gate gate"].Round(time.Millisecond), streamCPU["gate dockerd"].Round(time.Millisecond))
}

// TestBlindRelayProcess is the blind relay of TestGateThroughput, run as a
// process of its own (this test binary again) when DOCKCA_BENCH_RELAY is
// "LISTEN,DOCKER-SOCKET,CERT-DIR": mutual TLS as the gate does it (TLS 1.2+,
// a client certificate from ca.pem required), one unix connection to dockerd
// per client connection, two io.Copys. It serves until killed.
func TestBlindRelayProcess(t *testing.T) {
	spec := os.Getenv("DOCKCA_BENCH_RELAY")
	if spec == "" {
		t.Skip("only run by TestGateThroughput")
	}
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		t.Fatalf("DOCKCA_BENCH_RELAY=%q: want LISTEN,DOCKER-SOCKET,CERT-DIR", spec)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(parts[2], "server-cert.pem"), filepath.Join(parts[2], "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(parts[2], "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	ln, err := tls.Listen("tcp", parts[0], &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer c.Close()
			d, err := net.Dial("unix", parts[1])
			if err != nil {
				return
			}
			defer d.Close()
			go func() { _, _ = io.Copy(d, c); d.Close() }()
			_, _ = io.Copy(c, d)
		}()
	}
}

// benchRounds is the number of interleaved rounds and the length of each
// window: DOCKCA_GATE_ROUNDS (default 4) and DOCKCA_GATE_WINDOW (default 2s).
func benchRounds(t *testing.T) (int, time.Duration) {
	rounds, window := 4, 2*time.Second
	if v := os.Getenv("DOCKCA_GATE_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("DOCKCA_GATE_ROUNDS=%q: want a positive number", v)
		}
		rounds = n
	}
	if v := os.Getenv("DOCKCA_GATE_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("DOCKCA_GATE_WINDOW=%q: want a duration", v)
		}
		window = d
	}
	return rounds, window
}

// spread renders the median of xs and its range.
func spread(xs []float64, f string) string {
	s := slices.Clone(xs)
	slices.Sort(s)
	return fmt.Sprintf(f+" ["+f+"-"+f+"]", s[len(s)/2], s[0], s[len(s)-1])
}

// cpuTimes reads the user and system CPU time of the named processes (all
// their threads) from /proc/PID/stat.
func cpuTimes(t *testing.T, pids map[string]int, names []string) map[string]time.Duration {
	t.Helper()
	out := map[string]time.Duration{}
	for _, n := range names {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pids[n]))
		if err != nil {
			t.Fatal(err)
		}
		// The command name may hold spaces; fields count from after its ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		out[n] = time.Duration(utime+stime) * (time.Second / clockTicks)
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

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
