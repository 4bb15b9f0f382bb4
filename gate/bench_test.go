package gate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/internal/testca"
)

type noRevocations struct{}

func (noRevocations) Revoked(context.Context, *x509.Certificate) (*authz.Revocation, error) {
	return nil, nil
}

// BenchmarkGateOverhead measures what the gate itself costs per request:
// GET /containers/json through the gate to a stand-in dockerd on a unix
// socket that answers at once, against the same stand-in served over TLS
// directly. The real comparison with dockerd is TestGateThroughput in
// cmd/dockca; this one isolates the gate's own code for profiling:
//
//	go test -tags nobadger,nomysql,nopgx -run '^$' -bench GateOverhead -cpuprofile cpu.out ./gate/
func BenchmarkGateOverhead(b *testing.B) {
	ca := testca.New(b)
	dir := b.TempDir()
	srv, err := ca.IssueDaemon(context.Background(), "127.0.0.1", nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "server-cert.pem"), srv.Cert, 0o600)
	os.WriteFile(filepath.Join(dir, "server-key.pem"), srv.Key, 0o600)
	block, _ := pem.Decode(ca.RootPEM)
	root, _ := x509.ParseCertificate(block.Bytes)

	backend := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "[]\n")
	}
	sock := filepath.Join(b.TempDir(), "docker.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	go http.Serve(ul, http.HandlerFunc(backend))
	defer ul.Close()

	gl, _ := net.Listen("tcp", "127.0.0.1:0")
	g, err := New(Options{Listener: gl, Docker: "unix://" + sock, CertDir: dir,
		Authz: authz.Options{Root: root, Revocations: noRevocations{}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Serve(ctx)

	pair, _ := tls.X509KeyPair(srv.Cert, srv.Key)
	dl, _ := net.Listen("tcp", "127.0.0.1:0")
	pool := x509.NewCertPool()
	pool.AddCert(root)
	go http.Serve(tls.NewListener(dl, &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}),
		http.HandlerFunc(backend))
	defer dl.Close()

	admin, _ := ca.IssueClient(context.Background(), "ada", "admin", 0)
	cpair, _ := tls.X509KeyPair(admin.Cert, admin.Key)
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8,
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cpair}, RootCAs: pool}}}
	run := func(b *testing.B, addr string) {
		url := "https://" + addr + "/v1.41/containers/json"
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, dl.Addr().String()) })
	b.Run("gate", func(b *testing.B) { run(b, gl.Addr().String()) })
}
