package gate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dockca/dockca/pki"
)

// The gate serves each TLS connection from one goroutine of its own while
// the requests on it are plain GET and HEAD requests (most of what the
// docker CLI sends: ps, inspect, images, logs, events, stats): it reads the
// request head, parses it once with net/http's own parser, judges it,
// writes it to a unix connection to dockerd that belongs to this client
// connection alone, and relays the answer. net/http's server costs more
// than the rest of the gate on such a request: a goroutine that watches
// the connection during every request, three deadline changes, a context,
// a response writer, and the pool lookup for the backend connection; on a
// small request that is a third of the gate's CPU time and two more
// wake-ups of the process.
//
// The first request that is anything else (a body, an upgrade, HTTP/1.0,
// an Expect, a head that does not parse or is not plainly valid) hands the
// connection, with every byte not yet consumed, to net/http's server,
// which serves it from then on through ServeHTTP. That request is parsed
// there, once for what is judged and forwarded; the parse here only
// chose the path. So net/http answers every malformed request as before.

const (
	handshakeTimeout = 30 * time.Second
	headTimeout      = 30 * time.Second
	idleTimeout      = 5 * time.Minute
	// maxFastHead bounds the request head the fast path reads; a longer
	// one (large X-Registry-Auth headers, say) goes to net/http, which
	// allows up to 1 MiB.
	maxFastHead = 16 << 10
)

// connState is what the gate knows of a TLS connection: its handshake's
// outcome and the peer chain in PEM, encoded once per connection.
type connState struct {
	tls tls.ConnectionState
	pem [][]byte
}

func newConnState(cs tls.ConnectionState) *connState {
	out := make([][]byte, 0, len(cs.PeerCertificates))
	for _, c := range cs.PeerCertificates {
		out = append(out, pki.PEMCert(c))
	}
	return &connState{tls: cs, pem: out}
}

type connKey struct{}

// withConnState gives the requests of a handed-over connection its state.
func withConnState(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*handedConn); ok {
		return context.WithValue(ctx, connKey{}, hc.cs)
	}
	return ctx
}

// handedConn is a TLS connection given to net/http's server: its reads
// start with what the fast path had buffered and not consumed.
type handedConn struct {
	*tls.Conn
	br *bufio.Reader
	cs *connState
}

func (c *handedConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// handoff is the listener net/http's server accepts handed-over
// connections from.
type handoff struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (l *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoff) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *handoff) Addr() net.Addr { return l.addr }

func (l *handoff) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

// clientConn is one client connection served by the fast path.
type clientConn struct {
	g     *Gate
	ctx   context.Context
	tc    *tls.Conn
	cs    *connState
	br    *bufio.Reader
	bw    *bufio.Writer
	head  bytes.Reader
	hr    *bufio.Reader
	up    *backendConn // this connection's own connection to dockerd
	state atomic.Int32 // connIdle or connBusy; the shutdown wakes idle ones
}

const (
	connBusy int32 = iota
	connIdle
)

// serveConn runs one client connection: the handshake, then requests on
// the fast path until one needs net/http.
func (g *Gate) serveConn(ctx context.Context, raw net.Conn, cfg *tls.Config, h *handoff) {
	tc := tls.Server(raw, cfg)
	_ = raw.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		g.log.Debug("TLS handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &clientConn{g: g, ctx: ctx, tc: tc, cs: newConnState(tc.ConnectionState()),
		br: bufio.NewReaderSize(tc, maxFastHead), bw: bufio.NewWriterSize(tc, 16<<10)}
	c.hr = bufio.NewReaderSize(&c.head, 4096)
	if !g.track(c, true) {
		tc.Close()
		return
	}
	handed := false
	defer func() {
		g.track(c, false)
		if c.up != nil {
			c.up.Close()
		}
		if !handed {
			tc.Close()
		}
	}()
	defer func() {
		if v := recover(); v != nil {
			g.log.Error("gate: panic serving a connection", "remote", raw.RemoteAddr().String(), "panic", fmt.Sprint(v))
		}
	}()
	for {
		c.state.Store(connIdle)
		if g.closing.Load() {
			return
		}
		_ = tc.SetReadDeadline(time.Now().Add(idleTimeout))
		head, err := peekHead(c.br, func() { _ = tc.SetReadDeadline(time.Now().Add(headTimeout)) })
		c.state.Store(connBusy)
		if err != nil && !errors.Is(err, errHeadTooLong) {
			return // the client went away or stayed silent
		}
		var req *http.Request
		if err == nil {
			c.head.Reset(head)
			c.hr.Reset(&c.head)
			if req, err = http.ReadRequest(c.hr); err == nil && !fastEligible(req, head) {
				err = errSlowPath
			}
		}
		if err != nil {
			// net/http takes the connection from this request on, with
			// its bytes still unread; it parses and answers it.
			_ = tc.SetReadDeadline(time.Time{})
			handed = true
			h.give(&handedConn{Conn: tc, br: c.br, cs: c.cs})
			return
		}
		_, _ = c.br.Discard(len(head))
		if !c.serve(req) {
			return
		}
	}
}

// track adds or removes a fast-path connection; it refuses new ones once
// the gate is shutting down.
func (g *Gate) track(c *clientConn, add bool) bool {
	g.connsMu.Lock()
	defer g.connsMu.Unlock()
	if !add {
		delete(g.conns, c)
		return true
	}
	if g.closing.Load() {
		return false
	}
	if g.conns == nil {
		g.conns = map[*clientConn]struct{}{}
	}
	g.conns[c] = struct{}{}
	return true
}

// shutdownConns wakes the fast-path connections waiting for a request, so
// that they end; busy ones end after their request. After limit, the rest
// are closed.
func (g *Gate) shutdownConns(limit time.Duration) {
	g.closing.Store(true)
	deadline := time.Now().Add(limit)
	for {
		g.connsMu.Lock()
		n := len(g.conns)
		for c := range g.conns {
			if c.state.Load() == connIdle {
				_ = c.tc.SetReadDeadline(time.Now())
			}
			if time.Now().After(deadline) {
				c.tc.Close()
			}
		}
		g.connsMu.Unlock()
		if n == 0 || time.Now().After(deadline.Add(time.Second)) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	errHeadTooLong = errors.New("request head longer than the fast path reads")
	errSlowPath    = errors.New("request for net/http")
)

// peekHead waits until the buffer holds a whole request head and returns
// it, without consuming it. partial is called once if the head's first
// bytes arrived without the rest (the client then has headTimeout, as
// with net/http's ReadHeaderTimeout, instead of the idle timeout).
func peekHead(br *bufio.Reader, partial func()) ([]byte, error) {
	n := 1
	for {
		if _, err := br.Peek(n); err != nil {
			return nil, err
		}
		buf, _ := br.Peek(br.Buffered())
		if i := headEnd(buf); i > 0 {
			return buf[:i], nil
		}
		if len(buf) >= br.Size() {
			return nil, errHeadTooLong
		}
		if n == 1 && partial != nil {
			partial()
		}
		n = len(buf) + 1
	}
}

// headEnd is the length of the request head at the start of b (up to and
// including the empty line, CRLF or bare LF as net/textproto accepts), or
// -1.
func headEnd(b []byte) int {
	end := -1
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 {
		end = i + 3
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 && (end < 0 || i+2 < end) {
		end = i + 2
	}
	return end
}

// fastEligible reports whether the fast path serves req, parsed from head:
// an HTTP/1.1 GET or HEAD without a body, an upgrade or an Expect, with one
// plainly valid Host header. Everything else, and anything net/http's
// server would refuse, goes to net/http.
func fastEligible(req *http.Request, head []byte) bool {
	if req.ProtoMajor != 1 || req.ProtoMinor != 1 || req.Method != http.MethodGet && req.Method != http.MethodHead ||
		req.ContentLength != 0 || len(req.TransferEncoding) != 0 || !strings.HasPrefix(req.RequestURI, "/") {
		return false
	}
	h := req.Header
	for _, k := range [...]string{"Content-Length", "Transfer-Encoding", "Upgrade", "Expect", "Te", "Trailer"} {
		if _, ok := h[k]; ok {
			return false
		}
	}
	if v, ok := h["Connection"]; ok && (len(v) != 1 || !strings.EqualFold(v[0], "close") && !strings.EqualFold(v[0], "keep-alive")) {
		return false
	}
	// http.ReadRequest moves the Host header to req.Host and keeps no
	// count: a repeated one is found in the head itself.
	return hostLines(head) == 1 && plainHost(req.Host)
}

// hostLines counts the Host header lines of a request head.
func hostLines(head []byte) int {
	n := 0
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			break
		}
		head = head[i+1:]
		if len(head) >= 5 && strings.EqualFold(string(head[:5]), "host:") {
			n++
		}
	}
	return n
}

// plainHost accepts the Host values the docker CLI sends (a name or
// address and a port); net/http judges anything else.
func plainHost(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".-:[]_", c) >= 0) {
			return false
		}
	}
	return true
}

// serve judges and forwards one request; false ends the connection.
func (c *clientConn) serve(req *http.Request) bool {
	// http.ReadRequest took Host out of the headers, as net/http's server
	// does: the judge sees the same headers on both paths.
	req.TLS = &c.cs.tls
	if status, msg := c.g.judge(c.ctx, req, c.cs); status != 0 {
		return c.writeError(req, status, msg)
	}
	for attempt := 0; ; attempt++ {
		up, reused, err := c.upstream()
		if err != nil {
			c.g.log.Warn("dockerd did not answer", "method", req.Method, "path", req.URL.Path, "err", err)
			return c.writeError(req, http.StatusBadGateway, "dockca gate: dockerd did not answer on "+c.g.socket)
		}
		err = writeRequestHead(up.bw, req)
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(up.br, req)
		}
		if err != nil {
			c.dropUpstream()
			if reused && attempt == 0 {
				continue // dockerd had closed the idle connection; GET and HEAD are safe to send again
			}
			c.g.log.Warn("dockerd did not answer", "method", req.Method, "path", req.URL.Path, "err", err)
			return c.writeError(req, http.StatusBadGateway, "dockca gate: dockerd did not answer on "+c.g.socket)
		}
		return c.relay(req, resp)
	}
}

// upstream is this connection's connection to dockerd, dialled at its
// first request.
func (c *clientConn) upstream() (*backendConn, bool, error) {
	if c.up != nil {
		return c.up, true, nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, handshakeTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", c.g.socket)
	if err != nil {
		return nil, false, err
	}
	c.up = &backendConn{Conn: conn, br: bufio.NewReaderSize(conn, 16<<10), bw: bufio.NewWriterSize(conn, 4<<10)}
	return c.up, false, nil
}

func (c *clientConn) dropUpstream() {
	if c.up != nil {
		c.up.Close()
		c.up = nil
	}
}

// relay writes dockerd's answer to the client: the head less hop-by-hop
// headers, then the body with a Content-Length when dockerd gave one (one
// write for a small answer) or chunked and flushed as it comes (logs -f,
// events, stats, pull progress). False ends the connection.
func (c *clientConn) relay(req *http.Request, resp *http.Response) bool {
	defer resp.Body.Close()
	h := resp.Header
	for k := range h {
		if hopHeaders[k] {
			delete(h, k)
		}
	}
	bodyless := req.Method == http.MethodHead || resp.StatusCode < 200 || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified
	chunked := !bodyless && resp.ContentLength < 0
	switch {
	case bodyless:
	case chunked:
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	if req.Close {
		h["Connection"] = []string{"close"}
	}
	if err := writeHead(c.bw, resp); err != nil {
		return false
	}
	if bodyless {
		if resp.Close {
			c.dropUpstream()
		}
		return c.bw.Flush() == nil && !req.Close
	}
	var stop func()
	if chunked {
		// A stream may stay silent for long; a client that goes away
		// meanwhile must not leave the stream open on dockerd.
		stop = c.watchClient()
	}
	complete, werr := c.copyBody(resp.Body, chunked)
	if stop != nil {
		stop()
	}
	if !complete || resp.Close {
		c.dropUpstream()
	}
	return complete && werr == nil && !req.Close
}

// copyBody copies a response body to the client, flushing whenever the
// next read may wait for dockerd, so streams reach the client as they come
// and a small answer leaves in one write with its head.
func (c *clientConn) copyBody(body io.Reader, chunked bool) (complete bool, err error) {
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	for {
		if c.up.br.Buffered() == 0 && c.bw.Buffered() > 0 {
			if err := c.bw.Flush(); err != nil {
				return false, err
			}
		}
		n, rerr := body.Read(buf)
		if n > 0 {
			if chunked {
				c.bw.WriteString(strconv.FormatInt(int64(n), 16))
				c.bw.WriteString("\r\n")
			}
			c.bw.Write(buf[:n])
			if chunked {
				c.bw.WriteString("\r\n")
			}
		}
		if rerr == io.EOF {
			if chunked {
				c.bw.WriteString("0\r\n\r\n")
			}
			return true, c.bw.Flush()
		}
		if rerr != nil {
			// dockerd's answer broke off: the client's is cut short too,
			// which only closing its connection can say.
			return false, c.bw.Flush()
		}
	}
}

// watchClient closes the connection to dockerd if the client goes away
// while a stream is relayed; the function it returns stops watching.
func (c *clientConn) watchClient() func() {
	_ = c.tc.SetReadDeadline(time.Time{})
	var stopping atomic.Bool
	done := make(chan struct{})
	up := c.up
	go func() {
		defer close(done)
		if _, err := c.br.Peek(1); err != nil && !stopping.Load() {
			up.Close()
		}
	}()
	return func() {
		stopping.Store(true)
		_ = c.tc.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = c.tc.SetReadDeadline(time.Time{})
	}
}

// writeError answers a request with the gate's JSON error; false ends the
// connection.
func (c *clientConn) writeError(req *http.Request, status int, msg string) bool {
	body, _ := json.Marshal(map[string]string{"message": msg})
	body = append(body, '\n')
	resp := &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"},
		"Content-Length": {strconv.Itoa(len(body))}}}
	if req.Close {
		resp.Header["Connection"] = []string{"close"}
	}
	if err := writeHead(c.bw, resp); err != nil {
		return false
	}
	if req.Method != http.MethodHead {
		c.bw.Write(body)
	}
	return c.bw.Flush() == nil && !req.Close
}
