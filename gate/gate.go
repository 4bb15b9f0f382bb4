// Package gate is dockca's mutual-TLS front door for dockerd. dockerd then
// listens only on its unix socket; the gate terminates TLS itself, so that
// it, not dockerd, decides what reaches the Docker API:
//   - revocation is checked at the handshake and again on every request
//     (connections live long), which dockerd never does;
//   - each request is parsed once, here, judged by the same policy engine as
//     the authorization plugin (authz.Authorizer, not a copy), and forwarded
//     as parsed: the bodies that decide (container create, update, exec
//     create and the like) are read, judged and forwarded as the exact bytes
//     that were judged; data bodies (build contexts, image loads, archive
//     uploads) are streamed without buffering, under a Content-Type the gate
//     fixed, so dockerd cannot read them as parameters; repeated significant
//     headers are refused. The plugin's bypass classes (it is shown a digest
//     of the request) do not exist here;
//   - its own certificate is reloaded when its files change, without
//     dropping connections, so renewal needs no restart of anything.
//
// Hijacked connections (attach, exec, BuildKit's session) are relayed byte
// for byte with half-closes passed on, so `docker exec -i` and `docker cp`
// see the end of their input.
package gate

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
)

// Options configure a gate.
type Options struct {
	// Listen is the TCP address of the TLS listener (e.g. 0.0.0.0:2376).
	Listen string
	// Listener, if set, is used instead of listening on Listen (tests).
	Listener net.Listener
	// Docker is dockerd's local API: unix:///var/run/docker.sock.
	Docker string
	// CertDir holds the gate's server-cert.pem (leaf then intermediate)
	// and server-key.pem, the Docker daemon layout that dockca daemon setup
	// and renew --watch write; they are reloaded when they change.
	CertDir string
	// Authz is the policy engine's configuration: Root, Revocations,
	// Policy, Audit and DenyLocal are used as by the plugin. Containers
	// defaults to a lookup on Docker.
	Authz authz.Options
	// Log receives the gate's operational messages (nil: discarded).
	Log *slog.Logger
}

// MaxJudgedBody bounds the bodies the gate reads to judge them. Docker API
// bodies that decide are small JSON documents; a larger one is refused
// rather than streamed unjudged.
const MaxJudgedBody = 16 << 20

// ErrOptions marks invalid options.
var ErrOptions = errors.New("invalid gate options")

// Gate is a running front door.
type Gate struct {
	o       Options
	a       *authz.Authorizer
	certs   *certReloader
	socket  string
	proxy   *httputil.ReverseProxy
	backend *http.Transport
	pool    backendPool
	log     *slog.Logger

	connsMu sync.Mutex
	conns   map[*clientConn]struct{} // connections on the fast path
	closing atomic.Bool
}

// New checks the options, loads the certificate and builds the gate.
func New(o Options) (*Gate, error) {
	sock, err := unixSocket(o.Docker)
	if err != nil {
		return nil, err
	}
	if o.CertDir == "" {
		return nil, fmt.Errorf("%w: no certificate directory", ErrOptions)
	}
	if o.Authz.Containers == nil {
		o.Authz.Containers = authz.NewDockerSocket(sock)
	}
	if o.Authz.Name == "" {
		o.Authz.Name = "dockca gate"
	}
	a, err := authz.New(o.Authz)
	if err != nil {
		return nil, err
	}
	certs, err := newCertReloader(o.CertDir)
	if err != nil {
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gate{o: o, a: a, certs: certs, socket: sock, log: log, pool: backendPool{socket: sock}}
	g.backend = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		DisableCompression: true, Proxy: nil,
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", "docker", "docker"
		},
		Transport:     g.backend,
		BufferPool:    bufferPool{},
		FlushInterval: -1, // pull progress and build output stream as they come
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			g.log.Warn("dockerd did not answer", "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, http.StatusBadGateway, "dockca gate: dockerd did not answer on "+sock)
		},
	}
	return g, nil
}

func unixSocket(docker string) (string, error) {
	if docker == "" {
		return authz.DefaultDockerSocket, nil
	}
	u, err := url.Parse(docker)
	if err != nil || u.Scheme != "unix" || u.Path == "" {
		return "", fmt.Errorf("%w: --docker %q must be unix:///PATH (dockerd's local socket)", ErrOptions, docker)
	}
	return u.Path, nil
}

// TLSConfig is the gate's TLS configuration: TLS 1.2+, a client
// certificate required and verified against the dockca root, revocation
// checked at the handshake, the server certificate reloaded as it changes.
func (g *Gate) TLSConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      g.a.RootPool(),
		GetCertificate: g.certs.get,
		// Hijacked streams need HTTP/1.1; GateALPN lets dockca audit
		// recognise the gate.
		NextProtos: []string{api.GateALPN, "http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("dockca gate: a client certificate is required")
			}
			rev, err := g.o.Authz.Revocations.Revoked(context.Background(), cs.PeerCertificates[0])
			if err != nil {
				return fmt.Errorf("dockca gate: cannot check revocation: %w", err)
			}
			if rev != nil {
				return fmt.Errorf("dockca gate: certificate %s was revoked", pki.SerialOf(cs.PeerCertificates[0]))
			}
			return nil
		},
	}
	// The roots trusted now, per handshake: a CA rotation (a new root, an
	// old one retired) reaches the gate without a restart.
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := cfg.Clone()
		c.GetConfigForClient = nil
		c.ClientCAs = g.a.RootPool()
		return c, nil
	}
	return cfg
}

// Serve listens and serves until ctx ends, then shuts down gracefully.
func (g *Gate) Serve(ctx context.Context) error {
	ln := g.o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", g.o.Listen); err != nil {
			return fmt.Errorf("gate: listen: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	if r, ok := g.o.Authz.Revocations.(authz.Runner); ok {
		go func() { runErr <- r.Run(ctx) }()
	}
	go g.a.RunPolicyReload(ctx, g.o.Authz.PolicyReload, g.o.Authz.PolicyEvery, g.log)
	cfg := g.TLSConfig()
	h := newHandoff(ln.Addr())
	srv := &http.Server{Handler: g, ReadHeaderTimeout: headTimeout,
		IdleTimeout: idleTimeout, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		ConnContext: withConnState}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(h) }()
	go func() { serveErr <- g.accept(ctx, ln, cfg, h) }()
	select {
	case err := <-serveErr:
		ln.Close()
		_ = srv.Close()
		g.shutdownConns(0)
		return fmt.Errorf("gate: %w", err)
	case err := <-runErr:
		if err != nil && ctx.Err() == nil {
			ln.Close()
			_ = srv.Close()
			g.shutdownConns(0)
			return fmt.Errorf("gate: revocation refresher stopped: %w", err)
		}
		<-ctx.Done()
	case <-ctx.Done():
	}
	ln.Close()
	shutdown, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	done := make(chan struct{})
	go func() { g.shutdownConns(10 * time.Second); close(done) }()
	_ = srv.Shutdown(shutdown) // hijacked streams are not waited for
	<-done
	g.backend.CloseIdleConnections()
	g.pool.closeIdle()
	return nil
}

// accept runs the listener: each connection's handshake and fast path in
// a goroutine of its own (see conn.go).
func (g *Gate) accept(ctx context.Context, ln net.Listener, cfg *tls.Config, h *handoff) error {
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || g.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) {
				// Out of descriptors, say: wait as net/http's server does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				g.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		go g.serveConn(ctx, raw, cfg, h)
	}
}

// significant are the headers whose repetition could make dockerd read a
// request differently from the gate: refused when repeated.
var significant = []string{"Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding",
	"Connection", "Upgrade", "Host", "X-Registry-Auth", "X-Registry-Config", "Expect"}

// ServeHTTP judges and forwards one request that the fast path handed to
// net/http's server (see conn.go).
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cs, _ := r.Context().Value(connKey{}).(*connState)
	if cs == nil {
		writeError(w, http.StatusForbidden, "dockca gate: a client certificate is required")
		return
	}
	r.TLS = &cs.tls
	if status, msg := g.judge(r.Context(), r, cs); status != 0 {
		writeError(w, status, msg)
		return
	}
	switch {
	case hijacks(r):
		g.relayHijack(w, r)
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.ContentLength == 0 && len(r.TransferEncoding) == 0:
		if !g.fastForward(w, r) {
			writeError(w, http.StatusBadGateway, "dockca gate: dockerd did not answer on "+g.socket)
		}
	default:
		g.proxy.ServeHTTP(w, r)
	}
}

// judge decides one request as parsed, on either path: a status and a
// message to refuse it with, or 0 to forward it. A body that decides is
// read whole here and put back as exactly the bytes judged.
func (g *Gate) judge(ctx context.Context, r *http.Request, cs *connState) (int, string) {
	for _, h := range significant {
		if len(r.Header.Values(h)) > 1 {
			return http.StatusBadRequest, fmt.Sprintf("dockca gate: the header %s is repeated; it is refused, since dockerd and the gate could read it differently", h)
		}
	}
	if len(r.TransferEncoding) > 1 || r.Header.Get("Content-Encoding") != "" {
		return http.StatusBadRequest, "dockca gate: encoded request bodies are refused (dockerd does not decode them)"
	}
	if len(cs.tls.PeerCertificates) == 0 {
		return http.StatusForbidden, "dockca gate: a client certificate is required"
	}
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return http.StatusBadRequest, "dockca gate: the request URI cannot be parsed"
	}
	stream := streamsBody(r.Method, apiPath(u.Path))
	req := &authz.Request{User: cs.tls.PeerCertificates[0].Subject.CommonName, UserAuthNMethod: "TLS",
		RequestMethod: r.Method, RequestURI: r.RequestURI, RequestPeerCertificates: cs.pem,
		RequestHeaders: flatHeaders(r.Header), FrontDoor: true}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return http.StatusBadRequest, fmt.Sprintf("dockca gate: the Content-Type %q cannot be parsed", ct)
		}
		req.RequestHeaders["Content-Type"] = mt
	}
	if !stream && r.Body != nil && r.ContentLength != 0 {
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxJudgedBody+1))
		if err != nil {
			return http.StatusBadRequest, "dockca gate: the request body could not be read"
		}
		if len(body) > MaxJudgedBody {
			return http.StatusRequestEntityTooLarge, fmt.Sprintf("dockca gate: a %s %s body over %d bytes is refused (it decides what dockerd does, and is judged whole)", r.Method, u.Path, MaxJudgedBody)
		}
		req.RequestBody = body
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.TransferEncoding = nil
		r.Header.Set("Content-Length", fmt.Sprint(len(body)))
	}
	d := g.a.Decide(ctx, req)
	if !d.Allow {
		return http.StatusForbidden, "authorization denied by dockca gate: " + d.Msg
	}
	return 0, ""
}

// apiPath strips the /vX.Y prefix.
func apiPath(p string) string {
	if strings.HasPrefix(p, "/v") {
		if i := strings.IndexByte(p[1:], '/'); i > 0 {
			return p[i+1:]
		}
	}
	return p
}

// streamsBody reports the endpoints whose body is data rather than
// parameters: streamed, never buffered. Their Content-Type is the one the
// gate parsed (a form type is denied by the policy for every role but
// admin), so dockerd cannot read them as fields.
func streamsBody(method, p string) bool {
	switch {
	case method == http.MethodPost && (p == "/build" || p == "/images/load" || p == "/images/create" ||
		p == "/session" || p == "/grpc"):
		return true
	case method == http.MethodPut && strings.HasPrefix(p, "/containers/") && strings.HasSuffix(p, "/archive"):
		return true
	case method == http.MethodPost && strings.HasPrefix(p, "/plugins/") && strings.HasSuffix(p, "/push"):
		return true
	}
	return false
}

// hijacks reports requests whose connection may become a raw stream: an
// HTTP upgrade (attach and exec with the docker CLI, BuildKit's session),
// or attach and exec start, which dockerd hijacks even without one.
func hijacks(r *http.Request) bool {
	if r.Header.Get("Upgrade") != "" {
		return true
	}
	p := apiPath(r.URL.Path)
	return r.Method == http.MethodPost && (strings.HasPrefix(p, "/containers/") && strings.HasSuffix(p, "/attach") ||
		strings.HasPrefix(p, "/exec/") && strings.HasSuffix(p, "/start"))
}

func flatHeaders(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) > 0 {
			m[k] = v[0]
		}
	}
	return m
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}
