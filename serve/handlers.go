package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
	"github.com/dockca/dockca/store/kv"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+api.PathSign, s.instrument("sign", s.handleSign))
	mux.Handle("POST "+api.PathRenew, s.instrument("renew", s.handleRenew))
	mux.Handle("POST "+api.PathRevoke, s.instrument("revoke", s.handleRevoke))
	mux.Handle("GET "+api.PathCRL, s.instrument("crl", s.handleCRL))
	mux.Handle("GET "+api.PathRoots, s.instrument("roots", s.handleRoots))
	mux.Handle("GET "+api.PathPolicy, s.instrument("policy", s.handlePolicy))
	mux.Handle("GET "+api.PathAccess, s.instrument("access", s.handleAccess))
	mux.Handle("GET /ui/{$}", s.instrument("ui", s.handleUI))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	mux.Handle("GET "+api.PathHealthz, s.instrument("healthz", s.handleHealthz))
	mux.Handle("GET "+api.PathMetrics, promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	return mux
}

// httpError is an error with the status and the message a client sees.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// statusRecorder remembers the status code for metrics and logs.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// routineRoutes are polled by every plugin and client (the CRL every 30 s
// by default): their successful requests are logged at debug level, so
// the info log holds what changes something.
var routineRoutes = map[string]bool{"crl": true, "roots": true, "healthz": true}

// instrument adds the body limit, error mapping, latency metrics and one
// log line per request. Bodies (tokens, CSRs) are never logged.
func (s *Server) instrument(route string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		r.Body = http.MaxBytesReader(rec, r.Body, api.MaxBodyBytes)
		if err := h(rec, r); err != nil {
			status, msg := s.classify(route, err)
			if status >= 500 {
				s.log.Error("request failed", "route", route, "err", err)
			}
			writeJSON(rec, status, api.Error{Error: msg})
		}
		d := time.Since(start)
		code := strconv.Itoa(rec.status)
		s.m.latency.WithLabelValues(route, code).Observe(d.Seconds())
		level := slog.LevelInfo
		if routineRoutes[route] && rec.status < 400 {
			level = slog.LevelDebug
		}
		s.log.Log(r.Context(), level, "request", "method", r.Method, "route", route, "status", rec.status,
			"ms", float64(d.Microseconds())/1000, "client", clientIP(r))
	})
}

// classify maps an error to a status and a message safe to show.
func (s *Server) classify(route string, err error) (int, string) {
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.status, he.msg
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", api.MaxBodyBytes)
	case errors.Is(err, ca.ErrTokenUsed):
		s.m.tokenFailures.WithLabelValues("used").Inc()
		return http.StatusUnauthorized, api.MsgTokenUsed
	case errors.Is(err, pki.ErrTokenInvalid):
		s.m.tokenFailures.WithLabelValues("invalid").Inc()
		return http.StatusUnauthorized, err.Error()
	case errors.Is(err, ca.ErrRevoked), errors.Is(err, ca.ErrNotRenewable):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, ca.ErrBadCSR), errors.Is(err, pki.ErrPolicy):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, store.ErrAmbiguous):
		return http.StatusConflict, err.Error()
	case errors.Is(err, store.ErrNotFound) && route == "revoke":
		return http.StatusNotFound, "no such certificate"
	case errors.Is(err, kv.ErrUncertain):
		// The store may have applied it: 504, which clients resend only
		// where a second try is harmless (503 says nothing was done).
		return http.StatusGatewayTimeout, "the CA's store did not confirm the change; it may or may not have been made"
	case errors.Is(err, kv.ErrUnavailable):
		return http.StatusServiceUnavailable, "the CA's store is unavailable; try again or another replica"
	}
	return http.StatusInternalServerError, "internal error"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeJSON reads exactly one JSON object with known fields only.
func decodeJSON(r io.Reader, v any, allowEmpty bool) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.Is(err, io.EOF) && allowEmpty:
			return nil
		case errors.Is(err, io.EOF):
			return errorf(http.StatusBadRequest, "empty request body (want a JSON object)")
		}
		return errorf(http.StatusBadRequest, "malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errorf(http.StatusBadRequest, "malformed JSON: trailing data after the object")
	}
	return nil
}

// DecodeSignRequest reads and checks a /v1/sign body: one JSON object with
// a PEM CSR and a token. It touches nothing. The CSR's signature is
// verified by the signing call (a bad one is a 400 there, before the token
// is spent), not here as well.
func DecodeSignRequest(r io.Reader) (*api.SignRequest, *x509.CertificateRequest, error) {
	var req api.SignRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return nil, nil, err
	}
	if strings.TrimSpace(req.Token) == "" {
		return nil, nil, errorf(http.StatusBadRequest, "missing token")
	}
	csr, err := parseCSRField(req.CSR, true)
	if err != nil {
		return nil, nil, err
	}
	return &req, csr, nil
}

func parseCSRField(s string, required bool) (*x509.CertificateRequest, error) {
	if strings.TrimSpace(s) == "" {
		if required {
			return nil, errorf(http.StatusBadRequest, "missing csr")
		}
		return nil, nil
	}
	if !strings.Contains(s, "-----BEGIN") {
		return nil, errorf(http.StatusBadRequest, "csr must be PEM")
	}
	csr, err := ca.DecodeCSR([]byte(s))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	return csr, nil
}

// rateLimited answers 429 when the client's address is over its signing
// budget; signing, renewal and revocation all spend it, since each signs
// and writes a record.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request) error {
	if !s.limiter.allow(limiterKey(clientIP(r))) {
		w.Header().Set("Retry-After", "1")
		return errorf(http.StatusTooManyRequests, "too many signing requests from this address; slow down")
	}
	return nil
}

func (s *Server) handleSign(w http.ResponseWriter, r *http.Request) error {
	if err := s.rateLimited(w, r); err != nil {
		return err
	}
	req, csr, err := DecodeSignRequest(r.Body)
	if err != nil {
		return err
	}
	holder := holderOf(r)
	if holder == "" {
		holder = "from " + clientIP(r)
	}
	iss, err := s.auth().IssueWithToken(r.Context(), req.Token, csr, holder)
	if err != nil {
		return err
	}
	s.m.issued.WithLabelValues(string(iss.Record.Kind)).Inc()
	s.log.Info("issued", "serial", iss.Record.Serial, "kind", iss.Record.Kind, "name", iss.Record.Name,
		"token_id", iss.Record.TokenID, "client", clientIP(r))
	writeJSON(w, http.StatusOK, certResponse(iss))
	return nil
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) error {
	if err := s.rateLimited(w, r); err != nil {
		return err
	}
	peer := peerCert(r)
	if peer == nil {
		return errorf(http.StatusUnauthorized, "renewal needs the current certificate presented over mutual TLS")
	}
	var req api.RenewRequest
	if err := decodeJSON(r.Body, &req, true); err != nil {
		return err
	}
	csr, err := parseCSRField(req.CSR, false)
	if err != nil {
		return err
	}
	iss, err := s.auth().Renew(r.Context(), peer, csr, holderOf(r)) // none: the old record's
	if err != nil {
		return err
	}
	s.m.renewals.WithLabelValues(string(iss.Record.Kind)).Inc()
	s.log.Info("renewed", "serial", iss.Record.Serial, "from", iss.Record.IssuedBy, "kind", iss.Record.Kind, "name", iss.Record.Name)
	writeJSON(w, http.StatusOK, certResponse(iss))
	return nil
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	if err := s.rateLimited(w, r); err != nil {
		return err
	}
	var req api.RevokeRequest
	if err := decodeJSON(r.Body, &req, false); err != nil {
		return err
	}
	reason, err := parseReason(req.Reason)
	if err != nil {
		return err
	}
	var res *ca.RevokeResult
	switch peer := peerCert(r); {
	case req.Token != "":
		res, err = s.auth().RevokeWithToken(r.Context(), req.Token, reason)
	case peer != nil:
		if req.Serial != "" {
			n, perr := pki.ParseSerial(req.Serial)
			if perr != nil || n.Cmp(peer.SerialNumber) != 0 {
				return errorf(http.StatusForbidden, "a certificate may only revoke itself; use an admin revoke token for others")
			}
		}
		res, err = s.auth().RevokeHolder(r.Context(), peer, reason)
	default:
		return errorf(http.StatusUnauthorized, "revocation needs the certificate over mutual TLS or an admin revoke token")
	}
	if err != nil {
		return err
	}
	if !res.Already {
		s.m.revocations.Inc()
	}
	s.log.Info("revoked", "serial", res.Record.Serial, "kind", res.Record.Kind, "name", res.Record.Name,
		"reason", reason.Name, "already", res.Already, "by_token", req.Token != "")
	writeJSON(w, http.StatusOK, RevokeResponse(res))
	return nil
}

// parseReason reads a revocation reason; empty means unspecified.
func parseReason(name string) (pki.Reason, error) {
	if name == "" {
		name = "unspecified"
	}
	reason, err := pki.ParseReason(name)
	if err != nil {
		return reason, errorf(http.StatusBadRequest, "%v", err)
	}
	return reason, nil
}

func (s *Server) handleCRL(w http.ResponseWriter, r *http.Request) error {
	if issuer := r.URL.Query().Get("issuer"); issuer != "" && !s.auth().IsCurrentIssuer(issuer) {
		return s.handleIssuerCRL(w, r, issuer)
	}
	c, err := s.currentCRL(r.Context())
	if err != nil {
		return err
	}
	crl := c.CRL
	// Short caching: a revocation must reach clients quickly, and the ETag
	// makes revalidation cheap.
	maxAge := min(300, int(time.Until(crl.NextUpdate).Seconds()))
	return writeCRL(w, r, crl.DER, fmt.Sprintf(`"%d-%s"`, crl.Number, c.tag), crl.ThisUpdate, max(maxAge, 0))
}

// writeCRL answers a CRL as DER or, with ?format=pem, PEM, with its ETag
// (revalidation answers 304), Last-Modified and max-age.
func writeCRL(w http.ResponseWriter, r *http.Request, der []byte, etag string, thisUpdate time.Time, maxAge int) error {
	body, ctype := der, "application/pkix-crl"
	switch r.URL.Query().Get("format") {
	case "", "der":
	case "pem":
		body, ctype = pki.PEMCRL(der), "application/x-pem-file"
		etag = strings.TrimSuffix(etag, `"`) + `-pem"`
	default:
		return errorf(http.StatusBadRequest, "format must be der or pem")
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d, must-revalidate", maxAge))
	w.Header().Set("Last-Modified", thisUpdate.UTC().Format(http.TimeFormat))
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, err := io.Copy(w, bytes.NewReader(body))
	return err
}

// handlePolicy serves the CA's stored authorization policy, the YAML as
// `dockca policy set` stored it, so remote plugins enforce the roles the CA
// issues. It is not secret: TLS is all it needs. 404 when none is stored
// (the built-in roles apply).
func (s *Server) handlePolicy(w http.ResponseWriter, r *http.Request) error {
	p, err := s.local.Policy(r.Context())
	if errors.Is(err, store.ErrNoPolicy) {
		return errorf(http.StatusNotFound, "no policy is stored: the built-in roles apply")
	}
	if err != nil {
		return err
	}
	w.Header().Set("ETag", p.ETag())
	w.Header().Set("Cache-Control", "public, max-age=60, must-revalidate")
	w.Header().Set("Last-Modified", p.UpdatedAt.UTC().Format(http.TimeFormat))
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, p.ETag()) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Content-Length", strconv.Itoa(len(p.YAML)))
	_, err = w.Write(p.YAML)
	return err
}

// servedCRL is a CRL as the service hands it out, with its ETag digest
// computed once (hashing megabytes on every request would not be cheap).
type servedCRL struct {
	*store.CRL
	tag string
}

func newServedCRL(crl *store.CRL) *servedCRL {
	sum := sha256.Sum256(crl.DER)
	return &servedCRL{CRL: crl, tag: hex.EncodeToString(sum[:8])}
}

// currentCRL is the CRL to hand out: the stored one while it is current
// (from memory while its number is unchanged), else a new one, which
// covers every revocation recorded before the request.
func (s *Server) currentCRL(ctx context.Context) (*servedCRL, error) {
	h, err := ca.CurrentCRLHeader(ctx, s.st, time.Now())
	if err != nil {
		return nil, err
	}
	if h != nil {
		if c := s.crl.Load(); c != nil && c.Number == h.Number {
			return c, nil
		}
		crl, err := s.st.CRL(ctx)
		if err != nil {
			return nil, err
		}
		c := newServedCRL(crl)
		s.crl.Store(c)
		return c, nil
	}
	// Many clients notice a stale CRL at once; GenerateCRL gives them
	// (and revocations under way) shared regenerations, each started after
	// its callers arrived, so none gets a CRL older than its request.
	crl, err := s.auth().GenerateCRL(ctx)
	if err != nil {
		return nil, err
	}
	c := newServedCRL(crl)
	s.crl.Store(c)
	return c, nil
}

// handleIssuerCRL serves the CRL of an earlier, still trusted intermediate
// (GET /v1/crl?issuer=FINGERPRINT), made on demand and cached by the
// authority until a revocation.
func (s *Server) handleIssuerCRL(w http.ResponseWriter, r *http.Request, issuer string) error {
	der, err := s.auth().IssuerCRL(r.Context(), issuer)
	if errors.Is(err, ca.ErrUnknownIssuer) {
		return errorf(http.StatusNotFound, "no issuer of this CA has the SHA-256 fingerprint %q", issuer)
	}
	if err != nil {
		return err
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return err
	}
	etag := fmt.Sprintf(`"%s-%d-%d"`, pki.NormalizeFingerprint(issuer)[:16], crl.Number, crl.ThisUpdate.Unix())
	return writeCRL(w, r, der, etag, crl.ThisUpdate, 60)
}

func (s *Server) handleRoots(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, err := w.Write(s.auth().Trust().RootsPEM())
	return err
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.st.CA(r.Context()); err != nil {
		return errorf(http.StatusServiceUnavailable, "database unavailable")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, err := io.WriteString(w, "ok\n")
	return err
}

func certResponse(iss *ca.Issued) api.CertResponse { return admin.CertResponse(iss) }

// RevokeResponse is the wire form of a revocation's result (see
// admin.RevokeResponse).
func RevokeResponse(res *ca.RevokeResult) api.RevokeResponse { return admin.RevokeResponse(res) }

// limiterKey buckets IPv6 clients by /64, the block one host or site is
// usually given, so that one client cannot spread over 2^64 addresses.
func limiterKey(ip string) string {
	if a := net.ParseIP(ip); a != nil && a.To4() == nil {
		return a.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip
}

// clientIP is the peer's IP. X-Forwarded-For is ignored on purpose: the
// service is meant to be reached directly, and trusting the header would
// let any client pick its own rate-limit bucket.
// holderOf is where a certificate goes, for its record: the client's
// label (api.HeaderHolder) and the address the request came from; ""
// without a label.
func holderOf(r *http.Request) string {
	label := pki.HolderLabel(r.Header.Get(api.HeaderHolder))
	if label == "" {
		return ""
	}
	return label + " (from " + clientIP(r) + ")"
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
