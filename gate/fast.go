package gate

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The fast path forwards GET and HEAD requests (most of what the docker CLI
// sends: ps, inspect, logs, events, stats) on a pooled unix connection from
// the handler's own goroutine. http.Transport hands every request to a
// write loop and every response to a read loop, two goroutine switches
// that cost more than the rest of the gate on a small request. Requests
// with bodies keep using the transport, which writes and reads
// concurrently, as an early answer from dockerd to a large upload needs.

// backendPool keeps idle connections to dockerd's socket.
type backendPool struct {
	socket string
	mu     sync.Mutex
	idle   []*backendConn
}

type backendConn struct {
	net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time
}

const (
	maxIdleBackend  = 64
	backendIdleTime = 60 * time.Second
)

func (p *backendPool) get(ctx context.Context) (*backendConn, bool, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(c.used) < backendIdleTime {
			p.mu.Unlock()
			return c, true, nil
		}
		c.Close()
	}
	p.mu.Unlock()
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", p.socket)
	if err != nil {
		return nil, false, err
	}
	return &backendConn{Conn: conn, br: bufio.NewReaderSize(conn, 16<<10), bw: bufio.NewWriterSize(conn, 4<<10)}, false, nil
}

func (p *backendPool) put(c *backendConn) {
	c.used = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= maxIdleBackend {
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
}

func (p *backendPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.idle {
		c.Close()
	}
	p.idle = nil
}

// hopHeaders are not forwarded (RFC 9110 7.6.1).
var hopHeaders = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true}

// writeRequestHead writes a bodiless request exactly as the gate judged it:
// the same request target, the client's headers less the hop-by-hop ones.
func writeRequestHead(w *bufio.Writer, r *http.Request) error {
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(r.RequestURI)
	w.WriteString(" HTTP/1.1\r\nHost: docker\r\n")
	for k, vs := range r.Header {
		if hopHeaders[k] || k == "Host" || k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				continue // net/http refused these already; never forward one
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
	return w.Flush()
}

// errRetry marks a pooled connection dockerd had already closed.
var errRetry = errors.New("stale backend connection")

// fastForward forwards a GET or HEAD request; false means it could not be
// sent at all (the caller answers 502).
func (g *Gate) fastForward(w http.ResponseWriter, r *http.Request) bool {
	for attempt := 0; attempt < 2; attempt++ {
		err := g.fastOnce(w, r)
		if err == nil {
			return true
		}
		if !errors.Is(err, errRetry) {
			g.log.Warn("dockerd did not answer", "method", r.Method, "path", r.URL.Path, "err", err)
			return false
		}
	}
	return false
}

func (g *Gate) fastOnce(w http.ResponseWriter, r *http.Request) error {
	c, reused, err := g.pool.get(r.Context())
	if err != nil {
		return err
	}
	if err := writeRequestHead(c.bw, r); err != nil {
		c.Close()
		if reused {
			return errRetry
		}
		return err
	}
	// A client that goes away (docker logs -f interrupted) must not leave
	// this goroutine waiting on dockerd: closing the connection ends it.
	stop := context.AfterFunc(r.Context(), func() { c.Close() })
	defer stop()
	resp, err := http.ReadResponse(c.br, r)
	if err != nil {
		c.Close()
		if reused && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return errRetry // GET and HEAD are safe to send again
		}
		return err
	}
	h := w.Header()
	for k, vs := range resp.Header {
		if !hopHeaders[k] {
			h[k] = vs
		}
	}
	if resp.ContentLength >= 0 && r.Method != http.MethodHead {
		h.Set("Content-Length", itoa64(resp.ContentLength))
	}
	w.WriteHeader(resp.StatusCode)
	complete := copyFlushing(w, resp.Body)
	resp.Body.Close()
	if complete && !resp.Close && stop() {
		g.pool.put(c)
	} else {
		c.Close()
	}
	return nil
}

// copyFlushing copies a response body, flushing after every read so that
// streams (logs -f, events, stats) reach the client as they come. It
// reports whether the body was read to its end.
func copyFlushing(w http.ResponseWriter, body io.Reader) bool {
	fl, _ := w.(http.Flusher)
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return false
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// bufferPool lends httputil.ReverseProxy its copy buffers.
type bufferPool struct{}

func (bufferPool) Get() []byte  { return *copyBufs.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBufs.Put(&b) }

func itoa64(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
