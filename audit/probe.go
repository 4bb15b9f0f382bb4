package audit

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/dockca/dockca/internal/api"
)

// answer is what a server said to GET /_ping and GET /version.
type answer struct {
	pingStatus    int
	versionStatus int // 0 when /version was not asked
	docker        bool
	engine        *Engine
}

// ok reports whether the API served a request: that is what makes an
// unauthenticated endpoint a root shell rather than a closed door.
func (a *answer) ok() bool {
	return a.pingStatus/100 == 2 || a.versionStatus/100 == 2
}

func (a *answer) describe() string {
	s := fmt.Sprintf("GET /_ping answered %d", a.pingStatus)
	if a.versionStatus != 0 {
		s += fmt.Sprintf(", GET /version %d", a.versionStatus)
	}
	if e := a.engine.describe(); e != "" {
		s += "; " + e
	}
	return s
}

// tlsOutcome is what one TLS connection attempt showed.
type tlsOutcome struct {
	sawCert    bool // the server sent its certificate: it speaks TLS
	version    uint16
	chain      []*x509.Certificate
	requested  bool // the server asked for a client certificate
	acceptable [][]byte
	alpn       string // the application protocol the server chose
	// handshakeErr or httpErr say where the connection ended, if it did.
	handshakeErr error
	httpErr      error
	answer       *answer // nil unless an HTTP response came back
}

// refused reports whether the server turned the connection down after
// asking for a client certificate: with TLS 1.2 the handshake fails, with
// TLS 1.3 the alert only arrives on the first read. A timeout is not a
// refusal; it proves nothing.
func (o *tlsOutcome) refused() bool {
	if !o.sawCert || !o.requested || o.answer != nil {
		return false
	}
	err := o.handshakeErr
	if err == nil {
		err = o.httpErr
	}
	return err != nil && !isTimeout(err)
}

func (o *tlsOutcome) failure() string {
	switch {
	case o.handshakeErr != nil:
		return "handshake: " + o.handshakeErr.Error()
	case o.httpErr != nil:
		return "request: " + o.httpErr.Error()
	}
	return "no answer"
}

// connect dials ep and bounds everything done on the connection by the
// per-connection timeout and by ctx. close must be called.
func (s *scanner) connect(ctx context.Context, ep Endpoint) (conn net.Conn, cctx context.Context, close func(), err error) {
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	var d net.Dialer
	conn, err = d.DialContext(cctx, "tcp", ep.String())
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	deadline, _ := cctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// The overall deadline or a cancel must also interrupt a blocked read.
	stop := context.AfterFunc(cctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return conn, cctx, func() { stop(); cancel(); _ = conn.Close() }, nil
}

// tlsProbe makes one TLS connection offering versions up to maxVersion and
// clientCert (nil: none) and, with ask, sends GET /_ping and GET /version.
// The error is only for a failed dial; everything after is in the outcome.
func (s *scanner) tlsProbe(ctx context.Context, ep Endpoint, clientCert *tls.Certificate, maxVersion uint16, ask bool) (*tlsOutcome, error) {
	conn, cctx, done, err := s.connect(ctx, ep)
	if err != nil {
		return nil, err
	}
	defer done()
	out := &tlsOutcome{}
	cfg := &tls.Config{
		// The audit has to see bad certificates to report them; it judges
		// the chain itself in certFindings and caFindings.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS10,
		// A dockca gate chooses its own protocol name: that is how it is
		// recognised before it refuses a connection without a certificate.
		NextProtos: []string{api.GateALPN, "http/1.1"},
		MaxVersion: maxVersion,
		VerifyConnection: func(cs tls.ConnectionState) error {
			out.sawCert = len(cs.PeerCertificates) > 0
			out.version = cs.Version
			out.chain = cs.PeerCertificates
			out.alpn = cs.NegotiatedProtocol
			return nil
		},
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			out.requested = true
			out.acceptable = cri.AcceptableCAs
			if clientCert != nil {
				return clientCert, nil
			}
			return &tls.Certificate{}, nil
		},
	}
	if _, err := netip.ParseAddr(ep.Host); err != nil {
		cfg.ServerName = ep.Host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(cctx); err != nil {
		out.handshakeErr = err
		return out, nil
	}
	out.version = tc.ConnectionState().Version
	if ask {
		out.answer, out.httpErr = askDocker(tc, ep)
	}
	return out, nil
}

// plainProbe sends GET /_ping and GET /version in plain HTTP. dialErr is
// set when there was no connection at all; httpErr when the other side did
// not answer in HTTP.
func (s *scanner) plainProbe(ctx context.Context, ep Endpoint) (ans *answer, httpErr, dialErr error) {
	conn, _, done, err := s.connect(ctx, ep)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	ans, err = askDocker(conn, ep)
	return ans, err, nil
}

// maxBody bounds what is read from a server: /version is well under this.
const maxBody = 64 << 10

// askDocker sends GET /_ping and, on the same connection, GET /version; no
// other request is ever sent, so the audit cannot change a daemon.
func askDocker(conn net.Conn, ep Endpoint) (*answer, error) {
	br := bufio.NewReader(conn)
	resp, body, err := get(conn, br, ep, "/_ping", false)
	if err != nil {
		return nil, fmt.Errorf("get /_ping: %w", err)
	}
	a := &answer{pingStatus: resp.StatusCode, docker: dockerHeaders(resp.Header)}
	if resp.Close || len(body) >= maxBody {
		return a, nil
	}
	resp, body, err = get(conn, br, ep, "/version", true)
	if err != nil {
		// /_ping already told what matters; a server that hangs up
		// afterwards does not change the finding.
		return a, nil
	}
	a.versionStatus = resp.StatusCode
	a.docker = a.docker || dockerHeaders(resp.Header)
	var v struct{ Version, APIVersion, Os, Arch string }
	if resp.StatusCode/100 == 2 && json.Unmarshal(body, &v) == nil && v.APIVersion != "" {
		a.docker = true
		a.engine = &Engine{Version: v.Version, APIVersion: v.APIVersion, OS: v.Os, Arch: v.Arch}
	}
	return a, nil
}

func get(conn net.Conn, br *bufio.Reader, ep Endpoint, path string, last bool) (*http.Response, []byte, error) {
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: path},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"User-Agent": {"dockca-audit"}, "Accept": {"*/*"}},
		Host:       ep.String(),
		Close:      last,
	}
	if err := req.Write(conn); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, nil, err
	}
	return resp, body, nil
}

// dockerHeaders recognises dockerd's answer: it sets Api-Version on every
// response, and Server: Docker/<version> on most.
func dockerHeaders(h http.Header) bool {
	return h.Get("Api-Version") != "" || strings.HasPrefix(h.Get("Server"), "Docker/")
}

// newProbeCert makes the throwaway client certificate for the wrong-CA
// probe: self-signed, so no daemon has any reason to trust it, and never
// written anywhere.
func newProbeCert() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make probe certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("make probe certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "dockca audit untrusted probe", Organization: []string{"dockca audit"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("make probe certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// spokeTLS reports whether a failed handshake still shows a TLS server: it
// answered with a TLS alert.
func spokeTLS(err error) bool {
	var alert tls.AlertError
	return errors.As(err, &alert)
}
