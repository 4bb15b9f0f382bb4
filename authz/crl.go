package authz

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/pki"
)

// ErrStaleCRL means no fresh revocation list was had within MaxStale; every
// TLS request is denied until one is.
var ErrStaleCRL = errors.New("revocation list is stale")

// CRLOptions configure a CRLSource (remote mode).
type CRLOptions struct {
	// URL is the dockca service's base URL; the CRL is GET URL/v1/crl (DER).
	URL string
	// URLs, instead of URL, are the base URLs of the service's replicas:
	// the request is built on the first, Client must fail over among them
	// (enroll.Client.HTTPClient does), and messages name them all.
	URLs []string
	// Root is the pinned dockca root: the TLS trust for the fetch and the
	// anchor the CRL signer must chain to.
	Root *x509.Certificate
	// OtherRoots are further trusted roots (an old root during a
	// rotation's overlap): issuers may chain to them too.
	OtherRoots []*x509.Certificate
	// Issuers are the certificates that may sign the CRL (the dockca
	// intermediate; the root itself is always accepted). Each must chain to
	// Root. A client certificate from another issuer is denied, because
	// this CRL says nothing about it.
	Issuers []*x509.Certificate
	// CacheDir keeps the last good CRL (0600 files in a 0700 directory) so
	// that a restart works offline within MaxStale. Optional with Socket.
	CacheDir string
	// Refresh is the fetch interval (default 30s); MaxStale how long the
	// last fresh CRL is trusted without a successful fetch (default 10m).
	Refresh, MaxStale time.Duration
	// Socket, when set, fetches the CRL as plain HTTP over this unix socket:
	// the service's admin socket in the dockca home (local mode while
	// dockca serve holds the database). URL is then only a label.
	Socket string
	// Client overrides the HTTP client (tests); by default TLS 1.2+ with
	// the roots trusted now (Root, then the service's bundle), following a
	// rotation.
	Client *http.Client
	// Failover, with URLs, spreads the default client's requests over the
	// replicas (enroll.Client.Failover); every connection is still
	// verified against the roots trusted now and the host it reaches.
	Failover func(http.RoundTripper) http.RoundTripper
	// Log receives a warning when the CRL turns stale (nil: none).
	Log *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// CRLSource is a RevocationChecker backed by the dockca service's CRL.
type CRLSource struct {
	o     CRLOptions
	url   string
	label string // url, or every replica's when there are several
	query string // ?issuer=FINGERPRINT, or ""
	// roots are the roots trusted now (crlroots.go); followRoots: they
	// follow the service's bundle (the default client only).
	roots       []*x509.Certificate
	followRoots bool
	signer      map[string]*x509.Certificate // by raw subject
	// rootSubjects are the roots' subjects: no leaf is issued by a root.
	rootSubjects map[string]bool

	mu      sync.RWMutex
	crl     *x509.RevocationList
	revoked map[string]Revocation // by serial bytes
	issuer  *x509.Certificate
	etag    string
	fresh   time.Time // when the service last confirmed the CRL (200 or 304)
	lastErr error
	warn    staleWarner
}

type crlMeta struct {
	ETag      string    `json:"etag"`
	FetchedAt time.Time `json:"fetched_at"`
}

const (
	crlCacheFile   = "crl.der"
	crlMetaFile    = "crl.json"
	maxCRLSize     = 64 << 20
	defaultRefresh = 30 * time.Second
	defaultStale   = 10 * time.Minute
)

// NewCRLSource checks the options and loads the cached CRL, if any. It does
// not fetch; Run (or Refresh) does.
func NewCRLSource(o CRLOptions) (*CRLSource, error) {
	if o.URL == "" && len(o.URLs) > 0 {
		o.URL = o.URLs[0]
	}
	if o.Root == nil || o.URL == "" || (o.CacheDir == "" && o.Socket == "") {
		return nil, fmt.Errorf("%w: CRL source needs URL, Root and CacheDir", ErrOptions)
	}
	if o.Socket == "" && !strings.HasPrefix(o.URL, "https://") {
		return nil, fmt.Errorf("%w: CRL URL %q must be https", ErrOptions, o.URL)
	}
	if o.Refresh <= 0 {
		o.Refresh = defaultRefresh
	}
	if o.MaxStale <= 0 {
		o.MaxStale = defaultStale
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	roots := x509.NewCertPool()
	roots.AddCert(o.Root)
	for _, r := range o.OtherRoots {
		roots.AddCert(r)
	}
	if o.Client == nil && o.Socket != "" {
		o.Client = unixHTTPClient(o.Socket, 5*time.Second)
	}
	s := &CRLSource{o: o, url: strings.TrimRight(o.URL, "/") + api.PathCRL, signer: map[string]*x509.Certificate{}, warn: staleWarner{log: o.Log},
		roots: append([]*x509.Certificate{o.Root}, o.OtherRoots...)}
	if o.Client == nil {
		if u, err := url.Parse(o.URL); err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("%w: CRL URL %q has no host", ErrOptions, o.URL)
		}
		var rt http.RoundTripper = &http.Transport{
			// Each connection is verified for the host it reaches,
			// which with replicas is not always URL's.
			DialTLSContext: s.dialService,
			Proxy:          nil, // the service is reached directly, never through a proxy
		}
		if o.Failover != nil {
			rt = o.Failover(rt)
		}
		s.o.Client = &http.Client{Timeout: 30 * time.Second, Transport: rt}
		s.followRoots = true
	}
	if len(o.Issuers) > 0 {
		// One CRL per issuer: ask for the CRL of the issuer this source
		// knows, which the service keeps serving after a rotation (every
		// dockca CRL lists every revocation, whichever issuer signed it).
		s.query = "?issuer=" + pki.Fingerprint(o.Issuers[0])
	}
	s.label = s.url
	if len(o.URLs) > 1 {
		all := make([]string, len(o.URLs))
		for i, u := range o.URLs {
			all[i] = strings.TrimRight(u, "/") + api.PathCRL
		}
		s.label = strings.Join(all, ", ")
	}
	s.signer[string(o.Root.RawSubject)] = o.Root
	s.rootSubjects = map[string]bool{string(o.Root.RawSubject): true}
	for _, r := range o.OtherRoots {
		s.signer[string(r.RawSubject)] = r
		s.rootSubjects[string(r.RawSubject)] = true
	}
	for _, c := range o.Issuers {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: o.Now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, fmt.Errorf("%w: CRL issuer %s does not chain to the root: %v", ErrOptions, c.Subject, err)
		}
		s.signer[string(c.RawSubject)] = c
	}
	if o.CacheDir == "" {
		return s, nil
	}
	if err := os.MkdirAll(o.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("create CRL cache: %w", err)
	}
	if err := s.loadCache(); err != nil && !errors.Is(err, os.ErrNotExist) {
		// A corrupt or forged cache is ignored; the next fetch replaces it.
		s.lastErr = fmt.Errorf("cached CRL unusable: %w", err)
	}
	return s, nil
}

func (s *CRLSource) loadCache() error {
	der, err := os.ReadFile(filepath.Join(s.o.CacheDir, crlCacheFile))
	if err != nil {
		return err
	}
	var meta crlMeta
	if mb, err := os.ReadFile(filepath.Join(s.o.CacheDir, crlMetaFile)); err == nil {
		_ = json.Unmarshal(mb, &meta)
	}
	return s.install(der, meta.ETag, meta.FetchedAt)
}

// install verifies a CRL and makes it current. fresh is when the service
// vouched for it.
func (s *CRLSource) install(der []byte, etag string, fresh time.Time) error {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return fmt.Errorf("parse CRL: %w", err)
	}
	s.mu.RLock()
	issuer, ok := s.signer[string(crl.RawIssuer)]
	s.mu.RUnlock()
	if !ok {
		return fmt.Errorf("CRL issued by %s, which is not a configured issuer", crl.Issuer)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("CRL signature: %w", err)
	}
	s.mu.RLock()
	old := s.crl
	s.mu.RUnlock()
	// Refuse a rollback to an older list, which could un-revoke someone.
	if old != nil && crl.Number != nil && old.Number != nil && crl.Number.Cmp(old.Number) < 0 &&
		bytes.Equal(old.RawIssuer, crl.RawIssuer) {
		return fmt.Errorf("CRL number %s is older than the current %s", crl.Number, old.Number)
	}
	revoked := make(map[string]Revocation, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		r := Revocation{RevokedAt: e.RevocationTime}
		if e.ReasonCode != 0 { // 0: the CRL gives no reason
			r.Reason = pki.ReasonName(e.ReasonCode)
		}
		revoked[string(e.SerialNumber.Bytes())] = r
	}
	s.mu.Lock()
	s.crl, s.revoked, s.issuer, s.etag, s.fresh = crl, revoked, issuer, etag, fresh
	s.mu.Unlock()
	return nil
}

// Refresh fetches the CRL once, with If-None-Match, and installs and caches
// a new one. A failure leaves the current CRL in place until MaxStale.
func (s *CRLSource) Refresh(ctx context.Context) error {
	err := s.refresh(ctx)
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	s.warn.observe(s.o.Now(), s.Freshness(ctx))
	return err
}

// Freshness implements FreshnessReporter.
func (s *CRLSource) Freshness(context.Context) Freshness {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f := Freshness{Mode: "remote", Source: s.label, ConfirmedAt: s.fresh, Stale: s.lastErr != nil || s.crl == nil, MaxStale: s.o.MaxStale.String()}
	if s.o.Socket != "" {
		f.Mode, f.Source = "local", "the dockca service's admin socket "+s.o.Socket
	}
	if s.lastErr != nil {
		f.Error = s.lastErr.Error()
	} else if s.crl == nil {
		f.Error = "no revocation list has been fetched yet"
	}
	return f
}

func (s *CRLSource) refresh(ctx context.Context) error {
	if err := s.refreshCRL(ctx); err != nil {
		return err
	}
	// The trust bundle changes only with a rotation; a failed read keeps
	// the roots in force until the next refresh.
	if err := s.refreshRoots(ctx); err != nil && s.o.Log != nil {
		s.o.Log.Warn("could not read the CA's trust bundle", "err", err)
	}
	return nil
}

func (s *CRLSource) refreshCRL(ctx context.Context) error {
	target := s.url + s.query
	if s.o.Socket != "" {
		target = "http://dockca" + api.PathCRL + s.query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("fetch CRL: %w", err)
	}
	s.mu.RLock()
	etag, have := s.etag, s.crl != nil
	s.mu.RUnlock()
	if have && etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	req.Header.Set("Accept", "application/pkix-crl")
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch CRL: %w", err)
	}
	defer resp.Body.Close()
	s.learnIssuers(resp.TLS)
	now := s.o.Now()
	switch {
	case resp.StatusCode == http.StatusNotModified && have:
		s.mu.Lock()
		s.fresh = now
		s.mu.Unlock()
		return s.writeMeta(crlMeta{ETag: etag, FetchedAt: now})
	case resp.StatusCode != http.StatusOK:
		from := s.url
		if resp.Request != nil && resp.Request.URL != nil {
			from = resp.Request.URL.String() // the replica that answered
		}
		return fmt.Errorf("fetch CRL: %s answered %s", from, resp.Status)
	}
	der, err := io.ReadAll(io.LimitReader(resp.Body, maxCRLSize+1))
	if err != nil {
		return fmt.Errorf("fetch CRL: %w", err)
	}
	if len(der) > maxCRLSize {
		return fmt.Errorf("fetch CRL: larger than %d bytes", maxCRLSize)
	}
	newTag := resp.Header.Get("ETag")
	if err := s.install(der, newTag, now); err != nil {
		return fmt.Errorf("fetch CRL: %w", err)
	}
	if s.o.CacheDir == "" {
		return nil
	}
	if err := writeFileAtomic(filepath.Join(s.o.CacheDir, crlCacheFile), der); err != nil {
		return fmt.Errorf("cache CRL: %w", err)
	}
	return s.writeMeta(crlMeta{ETag: newTag, FetchedAt: now})
}

// learnIssuers adds the intermediates of the service's own certificate
// chain, as verified to the pinned root in the fetch's handshake: after a
// rotation of the CA's intermediate (or root, through the cross-signed
// intermediate) the plugin recognises the new issuer's certificates
// without a restart. Every dockca CRL lists the revocations of every
// issuer of the CA (ca/rotatecrl.go), so the list fetched covers them.
func (s *CRLSource) learnIssuers(cs *tls.ConnectionState) {
	if cs == nil || len(cs.VerifiedChains) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, chain := range cs.VerifiedChains {
		if len(chain) < 3 {
			continue
		}
		for _, c := range chain[1 : len(chain)-1] {
			if _, ok := s.signer[string(c.RawSubject)]; !ok && c.IsCA {
				s.signer[string(c.RawSubject)] = c
			}
		}
	}
}

func (s *CRLSource) writeMeta(m crlMeta) error {
	if s.o.CacheDir == "" {
		return nil
	}
	b, _ := json.Marshal(m)
	if err := writeFileAtomic(filepath.Join(s.o.CacheDir, crlMetaFile), b); err != nil {
		return fmt.Errorf("cache CRL: %w", err)
	}
	return nil
}

// Run refreshes every Refresh until ctx ends. Fetch errors are kept for the
// denial message rather than returned: the cached CRL serves until MaxStale.
func (s *CRLSource) Run(ctx context.Context) error {
	t := time.NewTicker(s.o.Refresh)
	defer t.Stop()
	for {
		_ = s.Refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Revoked implements RevocationChecker.
func (s *CRLSource) Revoked(_ context.Context, cert *x509.Certificate) (*Revocation, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.crl == nil {
		return nil, fmt.Errorf("%w: no revocation list has been fetched from %s yet%s", ErrStaleCRL, s.label, lastErr(s.lastErr))
	}
	now := s.o.Now()
	if age := now.Sub(s.fresh); age > s.o.MaxStale {
		return nil, fmt.Errorf("%w: the last fresh copy from %s is from %s, older than the %s allowed%s",
			ErrStaleCRL, s.label, s.fresh.UTC().Format(time.RFC3339), s.o.MaxStale, lastErr(s.lastErr))
	}
	if nu := s.crl.NextUpdate; !nu.IsZero() && now.Sub(nu) > s.o.MaxStale {
		return nil, fmt.Errorf("%w: the service's list expired at %s (NextUpdate) and has not been re-signed",
			ErrStaleCRL, nu.UTC().Format(time.RFC3339))
	}
	// A dockca CRL lists the revocations of every generation of the CA
	// (ca/rotatecrl.go), so it covers the certificates of every configured
	// issuer; a certificate of any other issuer is not this CA's.
	if _, ok := s.signer[string(cert.RawIssuer)]; !ok || s.rootSubjects[string(cert.RawIssuer)] {
		return nil, fmt.Errorf("the revocation list covers certificates issued by %s, not by %s", s.issuer.Subject, cert.Issuer)
	}
	if r, ok := s.revoked[string(cert.SerialNumber.Bytes())]; ok {
		return &r, nil
	}
	return nil, nil
}

func lastErr(err error) string {
	if err == nil {
		return ""
	}
	return " (last error: " + err.Error() + ")"
}

// writeFileAtomic writes a 0600 file by rename so that readers never see a
// partial CRL, and a crash cannot bring back an old one.
func writeFileAtomic(name string, data []byte) error {
	return atomicfile.WriteFile(name, data, 0o600)
}

// unixHTTPClient speaks plain HTTP over a unix socket.
func unixHTTPClient(socket string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
		Proxy: nil, MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second,
	}}
}
