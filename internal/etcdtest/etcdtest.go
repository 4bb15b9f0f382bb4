// Package etcdtest starts real, throwaway etcd clusters for tests: three
// members (Debian's etcd-server, /usr/bin/etcd) on free loopback ports,
// each with its own data directory under the test's temp dir, stopped
// when the test ends. dockca's replicas promise what a real etcd
// cluster gives them (quorum, leader changes, lost members), so tests use
// this rather than an in-process fake.
//
// When etcd is not installed the test is skipped, except under CI=true,
// where a missing etcd is a failure: CI must never pass by skipping.
package etcdtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// Binary finds etcd ($DOCKCA_ETCD, Debian's /usr/bin/etcd, else $PATH), or
// skips the test as dockerdtest does for a missing command (fails it under
// CI=true).
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("DOCKCA_ETCD"), "/usr/bin/etcd"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return dockerdtest.RequireCommand(t, "etcd")
}

// Member is one etcd process.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:PORT
	Client    string // 127.0.0.1:PORT
	dir       string
	args      []string
	bin       string
	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{}
	log       *os.File
}

// Cluster is a running etcd cluster.
type Cluster struct {
	Members []*Member
	tls     *TLS
}

// Options tune Start.
type Options struct {
	// Members is the cluster size; 0 means 3.
	Members int
	// TLS serves clients over TLS with client-certificate authentication
	// (peers stay on plain HTTP, on loopback).
	TLS *TLS
}

// TLS names the files of the cluster's client TLS: its CA (which must
// also have signed the clients' certificates), its certificate and key,
// and a client certificate and key for the harness's own client.
type TLS struct {
	CA, Cert, Key, ClientCert, ClientKey string
}

// Start runs a cluster and waits until it has a leader; it is stopped
// when the test ends.
func Start(t testing.TB, o *Options) *Cluster {
	t.Helper()
	if o == nil {
		o = &Options{}
	}
	c, err := LaunchWith(t.TempDir(), Binary(t), *o)
	if c != nil {
		t.Cleanup(c.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Launch runs an n-member cluster of bin with its data under dir (for
// benchmarks, which have no testing.TB) and waits until a write through it
// succeeds. The caller stops it.
func Launch(dir, bin string, n int) (*Cluster, error) {
	return LaunchWith(dir, bin, Options{Members: n})
}

// LaunchWith is Launch with options.
func LaunchWith(dir, bin string, o Options) (*Cluster, error) {
	n := o.Members
	if n <= 0 {
		n = 3
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &Cluster{tls: o.TLS}
	scheme := "http://"
	if o.TLS != nil {
		scheme = "https://"
	}
	var initial []string
	peers := make([]string, n)
	for i := range n {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		peers[i] = "http://" + a
		initial = append(initial, "m"+strconv.Itoa(i)+"="+peers[i])
	}
	token := fmt.Sprintf("dockca-test-%d", time.Now().UnixNano())
	for i := range n {
		client, err := freeAddr()
		if err != nil {
			return nil, err
		}
		m := &Member{Name: "m" + strconv.Itoa(i), Client: client, ClientURL: scheme + client,
			dir: filepath.Join(dir, "m"+strconv.Itoa(i)), bin: bin}
		m.args = []string{
			"--name", m.Name, "--data-dir", m.dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--logger", "zap", "--log-outputs", filepath.Join(dir, m.Name+".log"),
		}
		if o.TLS != nil {
			m.args = append(m.args, "--cert-file", o.TLS.Cert, "--key-file", o.TLS.Key,
				"--trusted-ca-file", o.TLS.CA, "--client-cert-auth")
		}
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		if err := m.start(); err != nil {
			c.Stop()
			return nil, fmt.Errorf("start etcd member %s: %w", m.Name, err)
		}
	}
	if err := c.waitHealthy(30 * time.Second); err != nil {
		return c, err
	}
	return c, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := exec.Command(m.bin, m.args...)
	log, err := os.OpenFile(filepath.Join(filepath.Dir(m.dir), m.Name+".out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	m.cmd, m.log, m.done = cmd, log, make(chan struct{})
	done := m.done
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	return nil
}

// Kill stops the member with SIGKILL, as a crash would.
func (m *Member) Kill() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts a killed member again on its data directory.
func (m *Member) Restart() error {
	m.Kill()
	args := append([]string(nil), m.args...)
	for i, a := range args {
		if a == "--initial-cluster-state" {
			args[i+1] = "existing"
		}
	}
	m.args = args
	return m.start()
}

// Stop ends every member.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.mu.Lock()
		cmd, done := m.cmd, m.done
		m.mu.Unlock()
		if cmd == nil {
			continue
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// Endpoints is HOST:PORT of every member, comma-separated (for an
// etcd:// store URL).
func (c *Cluster) Endpoints() string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.Client)
	}
	return strings.Join(eps, ",")
}

// URL is a store URL for prefix on this cluster.
func (c *Cluster) URL(prefix string) string { return "etcd://" + c.Endpoints() + "/" + prefix }

// Client returns a client of the whole cluster, closed at the end of the
// test.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := c.newClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (c *Cluster) newClient() (*clientv3.Client, error) {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if c.tls != nil {
		pair, err := tls.LoadX509KeyPair(c.tls.ClientCert, c.tls.ClientKey)
		if err != nil {
			return nil, err
		}
		pemCA, err := os.ReadFile(c.tls.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemCA)
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return clientv3.New(cfg)
}

// waitHealthy waits until a write through the cluster succeeds.
func (c *Cluster) waitHealthy(timeout time.Duration) error {
	cli, err := c.newClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = cli.Put(ctx, "/etcdtest/health", time.Now().String())
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("etcd cluster not healthy after %s: %w", timeout, err)
}
