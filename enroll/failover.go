package enroll

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/caurl"
)

// Failover among the replicas of one CA.
//
// A Client holds a list of base URLs, all serving one CA and all pinned by
// the same root. Every request starts at the URL that last answered in
// this process and moves to the next one only when the one it tried
// certainly did not decide it:
//
//   - the connection could not be made (refused, reset, no route, the
//     ConnectTimeout) or the TLS handshake failed for a reason other than
//     the certificate (a timeout, a reset, a server that does not speak
//     TLS): nothing was sent, so every request moves on;
//   - the replica answered 503 Service Unavailable: dockca serve answers
//     503 only for what it did not act on, and a proxy when it has no
//     backend, so every request moves on;
//   - the replica answered 502 or 504, or the connection failed after the
//     request was sent: a proxy or the replica may have acted on it, so
//     only a request that may be sent twice moves on (every GET, a renewal
//     — a second one certifies the same key again — and a revocation by
//     the certificate's holder, which is idempotent). A request carrying a
//     one-time token (enrollment, an admin revoke token) is not sent to
//     another replica: the error says that the token may have been used.
//
// A server whose certificate does not chain to the pinned root, or is not
// a dockca service certificate, stops the request at once: that is an
// impostor or a misconfigured replica, and quietly moving on would hide
// it. Every other answer, 4xx included, is the CA's answer: a used token,
// a revoked certificate or a policy refusal is the same at every replica.

// ConnectTimeout bounds the TCP connection and, separately, the TLS
// handshake to one URL, so that a dead or hung replica costs at most a few
// seconds before the next is tried. ResponseTimeout bounds the wait for
// the answer's headers once the request is sent.
const (
	ConnectTimeout  = 3 * time.Second
	ResponseTimeout = 15 * time.Second
)

// ErrNotService means the server's certificate chains to the root but is
// not the service's (see isService).
var ErrNotService = errors.New("the server's certificate is not a dockca service certificate")

// ErrMaybeActed means a request that must not be sent twice (it carries a
// one-time token) reached a replica, which failed before answering: it may
// have acted, so the request was not sent to another one.
var ErrMaybeActed = errors.New("the CA may have acted on the request before the connection failed")

// preference is the index of the URL that last answered, shared by every
// Client of the same list in this process.
type preference struct{ i atomic.Int32 }

var preferences sync.Map // caurl.Format(urls) -> *preference

func preferenceFor(urls []string) *preference {
	p, _ := preferences.LoadOrStore(caurl.Format(urls), &preference{})
	return p.(*preference)
}

type oneShotKey struct{}

// oneShot marks a request that must never reach two replicas.
func oneShot(ctx context.Context) context.Context {
	return context.WithValue(ctx, oneShotKey{}, true)
}

// failover is the http.RoundTripper of every Client: it sends each request
// to the client's URLs in turn, by the rules above. Requests are built on
// any of the client's URLs; only the path and query are kept.
type failover struct {
	urls []string
	pref *preference
	next http.RoundTripper
}

// Failover is next (a transport that verifies the service itself) sending
// each request to the client's URLs in turn, by the rules above: for a
// caller that keeps its own trust, as the authorization plugin's and the
// gate's CRL source does, which follows the roots through a rotation.
func (c *Client) Failover(next http.RoundTripper) http.RoundTripper {
	return &failover{urls: c.urls, pref: c.pref, next: next}
}

// AllFailedError is returned when no URL of the list could be used; it
// unwraps to each URL's failure.
type AllFailedError struct {
	Attempts []error
}

func (e *AllFailedError) Error() string {
	msgs := make([]string, len(e.Attempts))
	for i, a := range e.Attempts {
		msgs[i] = a.Error()
	}
	if len(msgs) == 1 {
		return msgs[0]
	}
	return "no CA URL answered: " + strings.Join(msgs, "; ")
}

func (e *AllFailedError) Unwrap() []error { return e.Attempts }

// attemptError is one URL's failure.
type attemptError struct {
	url string
	err error
}

func (e *attemptError) Error() string { return e.url + ": " + e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

func newTransport(cfg *tls.Config) *http.Transport {
	return &http.Transport{
		TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true,
		DialContext:         (&net.Dialer{Timeout: ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: ConnectTimeout, ResponseHeaderTimeout: ResponseTimeout,
		MaxIdleConnsPerHost: 64,
	}
}

func (f *failover) CloseIdleConnections() {
	if c, ok := f.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	once, _ := ctx.Value(oneShotKey{}).(bool)
	n := len(f.urls)
	start := int(f.pref.i.Load()) % n
	var fails []error
	for k := range n {
		i := (start + k) % n
		base := f.urls[i]
		var connected atomic.Bool
		trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected.Store(true) }}
		r, err := retarget(req.WithContext(httptrace.WithClientTrace(ctx, trace)), base)
		if err != nil {
			return nil, err
		}
		resp, err := f.next.RoundTrip(r)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			if notTrusted(err) {
				return nil, &attemptError{url: base, err: fmt.Errorf("%w; no other URL was tried: a server that is not the CA's service may be someone in the middle", err)}
			}
			if connected.Load() && once {
				return nil, &attemptError{url: base, err: fmt.Errorf("%w (%v); it was not sent to another URL, since its one-time token may have been used: "+
					"if a new attempt says the token has already been used, mint a new token", ErrMaybeActed, err)}
			}
			fails = append(fails, &attemptError{url: base, err: err})
			continue
		}
		retry := resp.StatusCode == http.StatusServiceUnavailable ||
			(!once && (resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout))
		if retry && k < n-1 {
			// Drain a little so the connection can be reused, then move on.
			_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
			resp.Body.Close()
			fails = append(fails, &attemptError{url: base, err: &api.StatusError{Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}})
			continue
		}
		if !retry {
			f.pref.i.Store(int32(i))
		}
		return resp, nil
	}
	return nil, &AllFailedError{Attempts: fails}
}

// retarget is req sent to base instead of the URL it was built on, with a
// fresh copy of its body.
func retarget(req *http.Request, base string) (*http.Request, error) {
	r := req.Clone(req.Context())
	u := *req.URL
	b := strings.TrimPrefix(base, "https://")
	u.Scheme, u.Host = "https", b
	r.URL, r.Host = &u, ""
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, errors.New("request body cannot be resent")
		}
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r.Body = body
	}
	return r, nil
}

// notTrusted reports a handshake refused because of the server's
// certificate: not from the pinned root, not for the name, not the
// service's.
func notTrusted(err error) bool {
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var he x509.HostnameError
	var cie x509.CertificateInvalidError
	return errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &he) || errors.As(err, &cie) ||
		errors.Is(err, ErrNotService) || errors.Is(err, ErrFingerprintMismatch)
}
