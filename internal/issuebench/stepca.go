package main

// stepca.go: `issuebench stepca` sets up a fresh step-ca (JWK provisioner,
// bbolt DB), drives POST /1.0/sign over HTTPS and reports what it stored.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

func runStepCA(args []string) error {
	var o runOpts
	fs := newFlags("stepca", &o)
	bin := fs.String("bin", "step-ca", "step-ca binary (a path, or a name looked up on PATH)")
	n := fs.Int("n", 40000, "tokens+CSRs to pre-make; the window ends early if they run out")
	keep := fs.Bool("keep", false, "keep the temp dir (ca.json, keys, db, step-ca.log)")
	fs.Parse(args)
	out, err := stepcaRun(o, *bin, *n, *keep, nil)
	if out != nil {
		out.report("stepca", o, "signings")
	}
	return err
}

// stepcaRun starts a fresh step-ca, loads it and checks what it stored.
// csrs, when given, are the CSRs to send (made by stepcaCSRs); otherwise n
// are made.
func stepcaRun(o runOpts, bin string, n int, keep bool, csrs [][]byte) (*outcome, error) {
	dir, err := os.MkdirTemp("", "issuebench-stepca-")
	if err != nil {
		return nil, err
	}
	if keep {
		defer fmt.Printf("kept %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if p50, p99, err := fsyncProbe(dir, 200); err == nil {
		fmt.Printf("disk: 4 KiB write+fdatasync in %s: p50 %v p99 %v\n", dir, p50, p99)
	}
	ca, err := newPKI()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfg, err := writeStepConfig(dir, addr, ca)
	if err != nil {
		return nil, err
	}
	srv, err := startChild(filepath.Join(dir, "step-ca.log"), bin, cfg)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	tlsCfg := &tls.Config{RootCAs: x509.NewCertPool()}
	tlsCfg.RootCAs.AddCert(ca.root)
	base := "https://" + addr
	if err := srv.waitHealthy(base+"/health", tlsCfg); err != nil {
		return nil, err
	}
	fmt.Printf("step-ca up on %s\n", base)

	// Minted only now: step-ca refuses tokens whose iat is before its start.
	var toks []string
	if csrs == nil {
		toks, csrs, err = ca.prepare(n, base+"/1.0/sign", o.warm+o.dur+10*time.Minute)
	} else {
		toks, err = ca.mintTokens(base+"/1.0/sign", benchNames(len(csrs)), o.warm+o.dur+10*time.Minute)
	}
	if err != nil {
		return nil, err
	}
	bodies := signBodies(csrs, toks, "ott")
	out := loadChild(srv, "step-ca", base+"/1.0/sign", tlsCfg, bodies, o)
	return out, dbStats(filepath.Join(dir, "db"), out.totalOK)
}

// loadChild runs the load against the service srv runs, stops it and
// reports its CPU time and the load generator's.
func loadChild(srv *child, name, url string, tlsCfg *tls.Config, bodies [][]byte, o runOpts) *outcome {
	self0 := cpuSelf()
	out := httpLoad(url, tlsCfg, bodies, o)
	self := cpuSelf() - self0
	if err := srv.stop(); err != nil {
		fmt.Printf("%s exit after SIGTERM: %v\n%s", name, err, srv.tail())
	}
	ps := srv.cmd.ProcessState
	cpu := ps.UserTime() + ps.SystemTime()
	fmt.Printf("cpu: %s %.2fs over its life (%.0fµs per 2xx); this load generator %.2fs during the run\n",
		name, cpu.Seconds(), float64(cpu.Microseconds())/float64(max(out.totalOK, 1)), self.Seconds())
	return out
}

// freeAddr is a free loopback port.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// writeStepConfig writes a minimal ca.json: one JWK provisioner (public key
// only: tokens are minted in-process), a bbolt DB, 24h leaf certificates.
func writeStepConfig(dir, addr string, ca *pki) (string, error) {
	root, crt, key, err := ca.write(dir)
	if err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(map[string]any{
		"root": root, "crt": crt, "key": key,
		"address":  addr,
		"dnsNames": []string{"127.0.0.1", "localhost"},
		"logger":   map[string]string{"format": "text"},
		"db":       map[string]string{"type": "bbolt", "dataSource": filepath.Join(dir, "db")},
		"authority": map[string]any{
			"claims":       map[string]string{"defaultTLSCertDuration": "24h"},
			"provisioners": []any{map[string]any{"type": "JWK", "name": provName, "key": ca.prov.Public()}},
		},
	}, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "ca.json")
	return path, os.WriteFile(path, b, 0o600)
}

// child is the step-ca process; its stdout and stderr go to log.
type child struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // from Wait, once exited is closed
}

func startChild(log, bin string, args ...string) (*child, error) {
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	c := &child{cmd: exec.Command(bin, args...), log: log, exited: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = f, f
	c.cmd.Env = append(os.Environ(), "STEPPATH="+filepath.Dir(log))
	if err := c.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { c.err = c.cmd.Wait(); f.Close(); close(c.exited) }()
	return c, nil
}

func (c *child) waitHealthy(url string, tlsCfg *tls.Config) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer hc.CloseIdleConnections()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.exited:
			return fmt.Errorf("step-ca exited (%v):\n%s", c.err, c.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("step-ca not healthy after 30s:\n%s", c.tail())
}

// stop sends SIGTERM, on which step-ca shuts down and closes its DB, waits
// (killing it after 20s) and returns Wait's error. Safe to call again.
func (c *child) stop() error {
	c.cmd.Process.Signal(syscall.SIGTERM) // fails harmlessly once exited
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	return c.err
}

func (c *child) tail() string {
	b, _ := os.ReadFile(c.log)
	return string(b[max(0, len(b)-2000):])
}

// dbStats opens the bbolt file read-only, after step-ca has exited, and
// counts what it stored.
func dbStats(path string, okAnswers int) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		n := map[string]int{}
		for _, name := range []string{"x509_certs", "used_ott"} {
			if b := tx.Bucket([]byte(name)); b != nil {
				n[name] = b.Stats().KeyN
			}
		}
		fmt.Printf("db: file %.1f MiB; x509_certs %d, used_ott %d; 2xx answers %d\n",
			float64(fi.Size())/(1<<20), n["x509_certs"], n["used_ott"], okAnswers)
		if n["x509_certs"] != okAnswers {
			fmt.Printf("WARNING: %d certificates stored but %d answered 2xx\n", n["x509_certs"], okAnswers)
		}
		return nil
	})
}

// fsyncProbe times rewriting a 4 KiB page and fdatasync-ing it, which a bbolt
// commit does twice (data pages, then the meta page).
func fsyncProbe(dir string, n int) (p50, p99 time.Duration, err error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	lat := make([]time.Duration, n)
	for i := range lat {
		t := time.Now()
		if _, err := f.WriteAt(make([]byte, 4096), int64(i%16)*4096); err != nil {
			return 0, 0, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0, err
		}
		lat[i] = time.Since(t)
	}
	slices.Sort(lat)
	return pct(lat, 50), pct(lat, 99), nil
}

// cpuSelf is this process's user+system CPU time so far.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
