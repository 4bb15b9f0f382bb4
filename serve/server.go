// Package serve runs dockca's certificate authority as a network service:
// one-time-token enrollment, renewal and revocation over mutual TLS, CRL and
// root distribution, health and Prometheus metrics (the HTTPS API of package
// api), the CA's stored policy, and the admin API of package admin on a
// unix socket in the dockca home, so that every admin command keeps
// working while the service holds the database's exclusive lock.
//
// The service unlocks the CA keys at start (and again when a rotation made
// by another host on a shared etcd store changes the CA record), is the
// only process with a bbolt database open, and issues its own HTTPS
// certificate from the intermediate for the names of its URL and listen
// address, renewing it while it runs.
package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// Defaults.
const (
	DefaultListen    = "127.0.0.1:8443"
	DefaultCertTTL   = 7 * 24 * time.Hour
	DefaultSignRate  = 10 // per client IP per second
	DefaultSignBurst = 20
	shutdownTimeout  = 30 * time.Second
	DefaultCAReload  = 5 * time.Second
)

// GCPercent is the garbage collector's target that dockca serve runs with
// unless GOGC is set: the service's live heap is small (megabytes) and it
// allocates quickly while signing, so the default of 100 collects very
// often; 400 took a tenth or more off the CPU time per signing under load,
// for a heap that stays in the tens of megabytes.
const GCPercent = 400

// SettingURL is the store setting where the service records its URL, so
// `dockca token create` run while it is stopped knows the audience.
const SettingURL = admin.SettingURL

// Options configure a Server.
type Options struct {
	// Listen is host:port of the HTTPS listener (port 0 picks one).
	Listen string
	// Address is the URL clients use (https://ca.example:8443); default
	// https://<Listen>. Its host and Listen's host name the certificate
	// and set the tokens' audience.
	Address string
	// Home holds the admin socket; empty runs without one.
	Home string
	// CertTTL is the lifetime of the service's own certificate.
	CertTTL time.Duration
	// SignRate and SignBurst limit /v1/sign per client IP.
	SignRate  float64
	SignBurst int
	// Logger receives structured logs; default slog.Default().
	Logger *slog.Logger
	// DebugPprof, when set, is a loopback HOST:PORT serving Go's
	// /debug/pprof profiles (CPU, allocations, goroutines) while the
	// service runs.
	DebugPprof string
	// CAReload is how often the service looks for a rotation made by
	// another host on a shared (etcd) store, and then unlocks the new
	// generation; default DefaultCAReload.
	CAReload time.Duration
}

// Server is a running service.
type Server struct {
	// a is the unlocked authority; followRotations replaces it when the
	// CA record changes in a shared store, and retired keeps the ones it
	// replaced until Serve ends (handlers may still hold them).
	a        atomic.Pointer[ca.Authority]
	retired  []*ca.Authority
	password []byte
	// followMu serialises reloadIfRotated (the follower's ticks, and a
	// rotation through the admin socket); serviceCertOwed: the authority
	// changed and the service certificate is not yet from the new one.
	followMu        sync.Mutex
	serviceCertOwed bool
	st              *store.Store
	minter          *ca.TokenMinter
	o               Options
	log             *slog.Logger
	m               *metrics
	limiter         *ipLimiter
	// local performs the admin operations (and serves the CRL) on the
	// service's store and unlocked authority.
	local *admin.Local
	// crl is the last CRL handed out, kept so that a CRL request reads
	// only the stored CRL's header while it is unchanged (the CRL itself
	// is megabytes with many revocations).
	crl atomic.Pointer[servedCRL]
	// inflight counts running handlers: the authority is closed only
	// after the last one, even when graceful shutdown timed out.
	inflight sync.WaitGroup
	names    []string
	url      string
	cert     atomic.Pointer[tls.Certificate]
	// certRenewAt is the fraction of the service certificate's lifetime
	// at which it is renewed (2/3; tests lower it).
	certRenewAt float64
	ln          net.Listener
	adminLn     net.Listener
	pprofLn     net.Listener
	https       *http.Server
	admin       *http.Server
	pprof       *http.Server
	wg          sync.WaitGroup
}

// Names returns the certificate names and the URL that o describes. The
// URL's port may still be 0 when Listen's is.
func Names(o Options) (names []string, base string, err error) {
	listen := o.Listen
	if listen == "" {
		listen = DefaultListen
	}
	lhost, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, "", fmt.Errorf("listen address %q: %w", listen, err)
	}
	addr := o.Address
	if addr == "" {
		host := lhost
		if host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
			host = "localhost"
		}
		addr = "https://" + net.JoinHostPort(host, portOf(listen))
	}
	base, err = pki.NormalizeCAURL(addr)
	if err != nil {
		return nil, "", err
	}
	u, _ := url.Parse(base)
	seen := map[string]bool{}
	for _, h := range []string{u.Hostname(), lhost} {
		if h == "" || seen[h] || (net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified()) {
			continue
		}
		if _, err := pki.ParseSAN(h); err != nil {
			return nil, "", fmt.Errorf("service name %q: %w", h, err)
		}
		seen[h] = true
		names = append(names, h)
	}
	return names, base, nil
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// New unlocks the CA and the token key with password, starts the embedded
// authority (with CRLs), issues the service certificate and opens the
// listeners. Nothing is served until Serve.
func New(ctx context.Context, st *store.Store, password []byte, o Options) (_ *Server, err error) {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.CertTTL == 0 {
		o.CertTTL = DefaultCertTTL
	}
	if o.SignRate == 0 {
		o.SignRate = DefaultSignRate
	}
	if o.SignBurst == 0 {
		o.SignBurst = DefaultSignBurst
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CAReload == 0 {
		o.CAReload = DefaultCAReload
	}
	names, base, err := Names(o)
	if err != nil {
		return nil, err
	}
	s := &Server{st: st, o: o, log: o.Logger, names: names, password: append([]byte(nil), password...),
		m: newMetrics(), limiter: newIPLimiter(o.SignRate, o.SignBurst), certRenewAt: 2.0 / 3}
	defer func() {
		if err != nil {
			s.closeListeners()
			if a := s.a.Load(); a != nil {
				a.Close()
			}
		}
	}()
	// Bind first: a service that cannot have its port or its socket must
	// fail before it writes anything (a token key, a service certificate).
	if o.DebugPprof != "" {
		if s.pprofLn, s.pprof, err = listenPprof(o.DebugPprof); err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
	}
	if s.ln, err = net.Listen("tcp", o.Listen); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if o.Home != "" {
		if s.adminLn, err = listenAdmin(filepath.Join(o.Home, api.SocketName), s.log); err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
	}
	rec, root, inter, err := ca.LoadCertificates(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if s.minter, err = ca.UnlockTokenKey(ctx, st, password); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	a, err := s.openAuthority(ctx)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	s.a.Store(a)
	keyProblems := ca.CheckKeys(rec, root, inter, password)
	for _, p := range keyProblems {
		s.log.Warn("CA key check failed", "key", p.Where, "problem", p.Problem)
	}
	if err := s.renewServiceCert(ctx); err != nil {
		return nil, err
	}
	// A URL defaulted from a port-0 listen address gets the real port.
	if o.Address == "" {
		u, _ := url.Parse(base)
		base = "https://" + net.JoinHostPort(u.Hostname(), portOf(s.ln.Addr().String()))
	}
	s.url = base
	if err := st.SetSetting(ctx, SettingURL, []byte(s.url)); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	s.local = admin.NewLocal(st, admin.LocalOptions{Authority: a, Minter: s.minter, CAURL: s.url,
		KeysChecked: "decrypted with the password when dockca serve started", KeyProblems: keyProblems,
		// dockca rotate through the admin socket: the new keys are
		// encrypted under the password the service holds, and the
		// service switches to them before it answers.
		Password: func() ([]byte, error) { return s.password, nil },
		Reload:   s.reloadIfRotated})
	s.https = &http.Server{
		Handler:           s.routes(),
		TLSConfig:         s.tlsConfig(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.adminLn != nil {
		// Owner-only and local: a backup streams the whole database and a
		// token set may be large, so the timeouts are generous.
		s.admin = &http.Server{Handler: s.adminRoutes(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: time.Minute,
			WriteTimeout: 10 * time.Minute, IdleTimeout: time.Minute}
	}
	return s, nil
}

// URL is the service's base URL.
func (s *Server) URL() string { return s.url }

// Addr is the HTTPS listener's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Names are the names of the service certificate.
func (s *Server) Names() []string { return append([]string(nil), s.names...) }

// RootFingerprint is the SHA-256 of the root, for clients to pin.
func (s *Server) RootFingerprint() string { return pki.Fingerprint(s.auth().Root()) }

// AdminSocket is the admin socket's path, or "".
func (s *Server) AdminSocket() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Certificates are checked in the handlers (against this CA and
		// its records), so that foreign and revoked certificates get a
		// clear 403 instead of a failed handshake, and /v1/sign works
		// without one.
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// renewServiceCert issues a new service certificate and swaps it in.
func (s *Server) renewServiceCert(ctx context.Context) error {
	iss, err := s.auth().IssueService(ctx, s.names, s.o.CertTTL)
	if err != nil {
		return fmt.Errorf("serve: service certificate: %w", err)
	}
	tc := &tls.Certificate{PrivateKey: iss.Key, Leaf: iss.Leaf}
	for _, c := range iss.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	s.cert.Store(tc)
	s.log.Info("service certificate issued", "serial", iss.Record.Serial, "names", s.names, "not_after", iss.Leaf.NotAfter)
	return nil
}

// keepServiceCertFresh renews the service certificate at two thirds of its
// lifetime, retrying every minute on failure.
func (s *Server) keepServiceCertFresh(ctx context.Context) {
	for {
		leaf := s.cert.Load().Leaf
		at := leaf.NotBefore.Add(time.Duration(float64(leaf.NotAfter.Sub(leaf.NotBefore)) * s.certRenewAt))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		for s.renewServiceCert(ctx) != nil {
			s.log.Error("service certificate renewal failed; retrying in a minute")
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Minute):
			}
		}
	}
}

// Serve serves until ctx is cancelled, then stops accepting, lets
// in-flight requests finish (up to 30 s) and stops the authority. The
// store stays open: its owner closes it.
func (s *Server) Serve(ctx context.Context) error {
	bg, stop := context.WithCancel(context.Background())
	defer stop()
	s.wg.Add(4)
	go func() { defer s.wg.Done(); s.keepServiceCertFresh(bg) }()
	go func() { defer s.wg.Done(); s.followRotations(bg) }()
	go func() { defer s.wg.Done(); s.keepCRLFresh(bg, 10*time.Minute) }()
	go func() { defer s.wg.Done(); s.limiter.sweep(bg, time.Minute) }()
	errc := make(chan error, 2)
	go func() { errc <- s.https.ServeTLS(s.ln, "", "") }()
	if s.admin != nil {
		go func() { errc <- s.admin.Serve(s.adminLn) }()
	}
	if s.pprof != nil {
		go func() { _ = s.pprof.Serve(s.pprofLn) }()
		defer s.pprof.Close()
		s.log.Info("debug pprof listening", "addr", s.pprofLn.Addr().String())
	}
	s.log.Info("serving", "url", s.url, "listen", s.Addr(), "admin_socket", s.AdminSocket(), "root_sha256", s.RootFingerprint())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if e := s.https.Shutdown(sctx); e != nil && err == nil {
		err = e
	}
	if s.admin != nil {
		if e := s.admin.Shutdown(sctx); e != nil && err == nil {
			err = e
		}
		os.Remove(s.adminLn.Addr().String())
	}
	// Past the grace period, cut the remaining connections (their request
	// contexts end, so handlers stop at their next database call) and wait
	// for the handlers before the authority goes away under them.
	s.https.Close()
	if s.admin != nil {
		s.admin.Close()
	}
	stop()
	s.wg.Wait()
	s.inflight.Wait()
	s.followMu.Lock()
	authorities := append(s.retired, s.auth())
	s.followMu.Unlock()
	for _, a := range authorities {
		if e := a.Close(); e != nil && err == nil {
			err = e
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// keepCRLFresh regenerates the stored CRL when it nears its nextUpdate
// (or a revocation outdated it) even if no client asks for it, so that
// readers of the database never find it stale.
func (s *Server) keepCRLFresh(ctx context.Context, every time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		if current, err := ca.CurrentCRLHeader(ctx, s.st, time.Now()); err == nil && current == nil {
			if _, err := s.auth().GenerateCRL(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("CRL regeneration failed", "err", err)
			}
		}
	}
}

func (s *Server) closeListeners() {
	if s.ln != nil {
		s.ln.Close()
	}
	if s.pprofLn != nil {
		s.pprofLn.Close()
	}
	if s.adminLn != nil {
		s.adminLn.Close()
	}
}

// Logger is the service's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

// Authority exposes the unlocked authority (for tests and tools).
func (s *Server) Authority() *ca.Authority { return s.auth() }

// auth is the current authority.
func (s *Server) auth() *ca.Authority { return s.a.Load() }

func (s *Server) openAuthority(ctx context.Context) (*ca.Authority, error) {
	return ca.Open(ctx, s.st, ca.OpenOptions{Password: s.password, Actor: "serve", CRL: true, DNSNames: s.names})
}

// followRotations checks every CAReload whether the CA record changed in
// the store, which on a shared store means another host rotated the CA
// (dockca --store etcd://… rotate …). It then unlocks the new generation,
// swaps it in for the handlers and the admin socket, and issues the
// service's certificate from it, so every replica follows a rotation
// without a restart. Until it does, what it issues is still valid: a
// rotation keeps the previous generation trusted. A failure is logged and
// retried at the next tick; the service keeps the generation it has.
func (s *Server) followRotations(ctx context.Context) {
	t := time.NewTicker(s.o.CAReload)
	defer t.Stop()
	failing := false // logged once per outage, not at every tick
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.reloadIfRotated(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			s.log.Error("following the CA in the store (rotations made elsewhere) failed; retrying every tick", "err", err, "every", s.o.CAReload)
		case err == nil && failing:
			s.log.Info("following the CA in the store works again")
		}
		failing = err != nil
	}
}

func (s *Server) reloadIfRotated(ctx context.Context) error {
	s.followMu.Lock()
	defer s.followMu.Unlock()
	old := s.auth()
	outdated, err := old.Outdated(ctx)
	if err != nil {
		return err
	}
	if outdated {
		a, err := s.openAuthority(ctx)
		if err != nil {
			return fmt.Errorf("unlock the new CA generation: %w", err)
		}
		s.a.Store(a)
		s.local.SetAuthority(a)
		s.retired = append(s.retired, old)
		s.crl.Store(nil)
		s.serviceCertOwed = true
		s.log.Info("CA rotated in the store: now issuing from the new generation",
			"root_sha256", pki.Fingerprint(a.Root()), "intermediate_sha256", pki.Fingerprint(a.Intermediate()))
	}
	// Owed until it succeeds: a failed issuance is retried at the next
	// tick, not left to the certificate's regular renewal.
	if s.serviceCertOwed {
		if err := s.renewServiceCert(ctx); err != nil {
			return err
		}
		s.serviceCertOwed = false
	}
	return nil
}

// peerCert is the client certificate of a mutual-TLS request, or nil.
func peerCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}
