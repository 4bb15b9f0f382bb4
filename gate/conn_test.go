package gate

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

// TestFastEligible: the gate's own path takes only plain HTTP/1.1 GET and
// HEAD heads; everything else goes to net/http's server, which parses and
// answers it as it always did.
func TestFastEligible(t *testing.T) {
	for _, c := range []struct {
		head string
		fast bool
	}{
		{"GET /v1.41/containers/json HTTP/1.1\nHost: 127.0.0.1:2376\nUser-Agent: Docker-Client\n\n", true},
		{"HEAD /_ping HTTP/1.1\nHost: docker\n\n", true},
		{"GET /_ping HTTP/1.1\nHost: docker\nConnection: close\n\n", true},
		{"GET /_ping HTTP/1.1\nHost: docker\nConnection: keep-alive\n\n", true},
		{"GET /_ping HTTP/1.0\nHost: docker\n\n", false},
		{"GET /_ping HTTP/1.1\n\n", false},                                  // no Host: net/http answers 400
		{"GET /_ping HTTP/1.1\nHost: docker\nHost: other\n\n", false},       // repeated Host
		{"GET /_ping HTTP/1.1\nHost: a b\n\n", false},                       // not a plain host
		{"GET /_ping HTTP/1.1\nHost: docker\nhost: x\n\n", false},           // repeated in another case
		{"POST /v1.41/containers/create HTTP/1.1\nHost: docker\n\n", false}, // a method with a body
		{"GET /_ping HTTP/1.1\nHost: docker\nContent-Length: 3\n\n", false},
		{"GET /_ping HTTP/1.1\nHost: docker\nContent-Length: 0\n\n", false},
		{"GET /_ping HTTP/1.1\nHost: docker\nTransfer-Encoding: chunked\n\n", false},
		{"GET /containers/x/attach/ws HTTP/1.1\nHost: docker\nUpgrade: websocket\nConnection: Upgrade\n\n", false},
		{"GET /_ping HTTP/1.1\nHost: docker\nExpect: 100-continue\n\n", false},
		{"GET /_ping HTTP/1.1\nHost: docker\nConnection: close, Upgrade\n\n", false},
		{"GET http://docker/_ping HTTP/1.1\nHost: docker\n\n", false}, // absolute form
	} {
		for _, eol := range []string{"\r\n", "\n"} {
			head := strings.ReplaceAll(c.head, "\n", eol)
			br := bufio.NewReaderSize(strings.NewReader(head+"GET /next"), 4096)
			got, err := peekHead(br, nil)
			if err != nil || string(got) != head {
				t.Fatalf("%q: peekHead %q, %v", head, got, err)
			}
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(got)))
			if err != nil {
				if c.fast {
					t.Fatalf("%q: %v", head, err)
				}
				continue // net/http's server answers it
			}
			if fast := fastEligible(req, got); fast != c.fast {
				t.Errorf("%q: fast path %v, want %v", head, fast, c.fast)
			}
		}
	}
}

// TestPeekHeadTooLong: a head that does not fit the fast path's buffer is
// left, unconsumed, for net/http's server.
func TestPeekHeadTooLong(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: docker\r\nX-Registry-Auth: " + strings.Repeat("a", maxFastHead) + "\r\n\r\n"
	br := bufio.NewReaderSize(strings.NewReader(head), maxFastHead)
	if _, err := peekHead(br, nil); err != errHeadTooLong {
		t.Fatalf("peekHead: %v, want errHeadTooLong", err)
	}
	if br.Buffered() != maxFastHead {
		t.Fatalf("%d bytes buffered, want all %d still unread", br.Buffered(), maxFastHead)
	}
}

// TestPeekHeadPartial: a head that arrives in pieces is assembled, and the
// header timeout is armed once, when its first bytes came alone.
func TestPeekHeadPartial(t *testing.T) {
	head := "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
	br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(head+"GET /next")), 4096)
	calls := 0
	got, err := peekHead(br, func() { calls++ })
	if err != nil || string(got) != head || calls != 1 {
		t.Fatalf("peekHead: %q, %v, partial called %d times", got, err, calls)
	}
}
