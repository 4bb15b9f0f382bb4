package enroll_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"

	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/testca"
	"github.com/dockca/dockca/internal/tlsbundle"
)

// daemonLike serves TLS on loopback the way dockerd --tlsverify does:
// it requires a client certificate of its CA, so a client without one is
// refused in the handshake (in TLS 1.2 before the client's Finished, in
// 1.3 after it). VerifyDaemon must judge the server's certificate either
// way.
func daemonLike(t *testing.T, b *tlsbundle.Bundle, maxVersion uint16) string {
	t.Helper()
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CA)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pool, MaxVersion: maxVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func TestVerifyDaemon(t *testing.T) {
	ours, theirs := testca.New(t), testca.New(t)
	root, err := tlsbundle.Leaf(ours.RootPEM)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(c *testca.CA, name string, usage x509.ExtKeyUsage) *tlsbundle.Bundle {
		b, err := c.Issue(testca.Request{CommonName: name, DNSNames: []string{name}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: usage})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		for {
			c, err := plain.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}} {
		good := daemonLike(t, issue(ours, "localhost", x509.ExtKeyUsageServerAuth), v.max)
		_, goodPort, _ := net.SplitHostPort(good)
		other := daemonLike(t, issue(ours, "dockerhost-b", x509.ExtKeyUsageServerAuth), v.max)
		_, otherPort, _ := net.SplitHostPort(other)
		foreign := daemonLike(t, issue(theirs, "localhost", x509.ExtKeyUsageServerAuth), v.max)
		client := daemonLike(t, issue(ours, "localhost", x509.ExtKeyUsageClientAuth), v.max)
		for _, c := range []struct {
			what, addr string
			want       error
		}{
			{"the right daemon by name", "localhost:" + goodPort, nil},
			{"the right daemon by IP", good, nil},
			{"a daemon of another name", "localhost:" + otherPort, enroll.ErrDaemonWrongName},
			{"a daemon of another CA", foreign, enroll.ErrDaemonForeign},
			{"a client certificate posing as a daemon", client, enroll.ErrDaemonForeign},
			{"a plain-HTTP server", plain.Addr().String(), enroll.ErrDaemonNoTLS},
			{"a closed port", closedAddr, enroll.ErrDaemonUnreachable},
		} {
			err := enroll.VerifyDaemon(context.Background(), c.addr, root)
			if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
				t.Errorf("%s, %s: %v, want %v", v.name, c.what, err, c.want)
			}
		}
	}
}
