package gate

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// relayHijack forwards a request that may turn its connection into a raw
// stream (attach, exec start, BuildKit's session). httputil.ReverseProxy
// ends an upgraded stream as soon as either side stops sending, which cuts
// `docker exec -i` and `docker cp` short when their input ends; here each
// direction's end is passed on as a half-close and the relay lasts until
// both directions are done.
func (g *Gate) relayHijack(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	backend, err := (&net.Dialer{}).DialContext(ctx, "unix", g.socket)
	cancel()
	if err != nil {
		writeError(w, http.StatusBadGateway, "dockca gate: dockerd did not answer on "+g.socket)
		return
	}
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.Host = "http", "docker", "docker"
	out.RequestURI = ""
	out.Header.Del("Proxy-Connection")
	if err := out.Write(backend); err != nil {
		backend.Close()
		writeError(w, http.StatusBadGateway, "dockca gate: forwarding to dockerd failed")
		return
	}
	br := bufio.NewReader(backend)
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		backend.Close()
		writeError(w, http.StatusBadGateway, "dockca gate: dockerd's answer could not be read")
		return
	}
	raw := resp.StatusCode == http.StatusSwitchingProtocols ||
		resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/vnd.docker.")
	if !raw {
		// An ordinary answer (an error, usually): relay it and be done.
		defer backend.Close()
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		backend.Close()
		writeError(w, http.StatusInternalServerError, "dockca gate: the connection cannot be hijacked")
		return
	}
	client, cbuf, err := hj.Hijack()
	if err != nil {
		backend.Close()
		return
	}
	// The response head as dockerd sent it; its body is the stream.
	resp.Body = nil
	resp.ContentLength = -1
	if err := writeResponseHead(client, resp); err != nil {
		client.Close()
		backend.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // client -> dockerd: whatever the client had already sent, then the rest
		defer wg.Done()
		if n := cbuf.Reader.Buffered(); n > 0 {
			pending, _ := cbuf.Reader.Peek(n)
			if _, err := backend.Write(pending); err != nil {
				closeWrite(backend)
				return
			}
		}
		relay(backend, client)
		closeWrite(backend)
	}()
	go func() { // dockerd -> client, starting with what the reader buffered
		defer wg.Done()
		if n := br.Buffered(); n > 0 {
			pending, _ := br.Peek(n)
			if _, err := client.Write(pending); err != nil {
				closeWrite(client)
				return
			}
		}
		relay(client, backend)
		closeWrite(client)
	}()
	wg.Wait()
	client.Close()
	backend.Close()
}

// relay copies one direction of a hijacked stream with a large buffer: a
// stream of many megabytes (docker exec's output, docker cp) then costs one
// read and one TLS write per 256 KiB, not per 16 KiB.
func relay(dst io.Writer, src io.Reader) {
	bufp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bufp)
	_, _ = io.CopyBuffer(dst, onlyRead{src}, *bufp)
}

// onlyRead hides a reader's WriteTo, so that CopyBuffer uses the buffer.
type onlyRead struct{ io.Reader }

var relayBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// writeResponseHead writes the status line and headers of resp.
func writeResponseHead(w io.Writer, resp *http.Response) error {
	bw := bufio.NewWriter(w)
	if err := writeHead(bw, resp); err != nil {
		return err
	}
	return bw.Flush()
}

// writeHead buffers the status line and headers of resp.
func writeHead(bw *bufio.Writer, resp *http.Response) error {
	text := resp.Status
	if text == "" {
		text = http.StatusText(resp.StatusCode)
	} else if i := strings.IndexByte(text, ' '); i >= 0 {
		text = text[i+1:]
	}
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(resp.StatusCode))
	bw.WriteByte(' ')
	bw.WriteString(text)
	bw.WriteString("\r\n")
	if err := resp.Header.Write(bw); err != nil {
		return err
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// closeWrite ends one direction of a stream: a TLS close_notify or a TCP or
// unix FIN, so the peer reads EOF while its own direction goes on.
func closeWrite(c net.Conn) {
	type writeCloser interface{ CloseWrite() error }
	if wc, ok := c.(writeCloser); ok {
		_ = wc.CloseWrite()
		return
	}
	_ = c.Close()
}
