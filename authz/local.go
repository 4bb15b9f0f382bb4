package authz

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// LocalDB is the database half of a LocalSource: the dockca database on
// this host, read without ever waiting on its lock. The package that owns
// the database implements it (admin.LocalDB), so that the plugin's package
// links neither the store nor the authority.
type LocalDB interface {
	// Path is the database file; the source watches it for changes.
	Path() string
	// Trust reads the CA's trust: the roots trusted now (two during a
	// root rotation's overlap) and every live intermediate.
	Trust(ctx context.Context) (roots, issuers []*x509.Certificate, err error)
	// Revocations reads every revocation, by serial (pki.FormatSerial).
	Revocations(ctx context.Context) (map[string]*Revocation, error)
}

// ErrDBLocked is matched by a LocalDB's error when another process holds
// the database (the CLI for one command, dockca serve while it runs).
var ErrDBLocked = errors.New("the dockca database is held by another process")

// LocalSource answers revocation from the dockca home on this host (local
// mode, --home). Two writers may hold that home, and the request path waits
// on neither:
//   - the CLI (dockca revoke, issue, …) holds the database for the length
//     of one command. The source keeps the revoked serials in memory and
//     reloads them whenever the database file changes, with a lock attempt
//     that never waits, so a revocation takes effect on the very next
//     request;
//   - dockca serve holds the database for as long as it runs. The source
//     then reads the service's current CRL over its admin socket in the
//     home (owner-only, like the database itself), revalidated by ETag
//     whenever the database file changes: a revocation through the service
//     is enforced on the next request too.
//
// When neither answers, the last list stays in force for at most maxStale,
// with a warning that says how old it is; past that, TLS requests are
// denied.
type LocalSource struct {
	db       LocalDB
	path     string
	sock     string
	maxStale time.Duration
	now      func() time.Time
	warn     staleWarner

	mu sync.Mutex
	// roots and issuers are the CA's trust, read again with the
	// revocations: a rotation reaches the plugin like a revocation does.
	roots    []*x509.Certificate
	issuers  []*x509.Certificate
	stamp    fileStamp
	revoked  map[string]*Revocation // from the database
	svc      *CRLSource             // the service's CRL, once needed
	viaSvc   bool                   // the current data is the service's CRL
	loadedAt time.Time              // when the current data was confirmed
	lastErr  error
}

// LocalOptions configure a LocalSource.
type LocalOptions struct {
	// Home is the dockca home holding, while dockca serve runs, its admin
	// socket.
	Home string
	// DB reads the database in Home (admin.LocalDB).
	DB LocalDB
	// MaxStale bounds how long the last revocation list is used when
	// neither the database nor the service can be read.
	MaxStale time.Duration
	// Log receives staleness warnings (nil: none).
	Log *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// How long a revalidation through the admin socket may take on the request
// path, and how often the service's CRL is revalidated when nothing in the
// home changes (its signature and NextUpdate age even so).
const (
	socketFetchTimeout = 2 * time.Second
	svcRevalidateEvery = 30 * time.Second
)

const racyWindow = time.Second

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// NewLocalSource reads the CA chain (the plugin's only trust anchor) and the
// revocations, from the database or, while dockca serve holds it, from the
// service's admin socket. It returns the root.
func NewLocalSource(ctx context.Context, o LocalOptions) (*LocalSource, *x509.Certificate, error) {
	if o.MaxStale <= 0 {
		o.MaxStale = defaultStale
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DB == nil {
		return nil, nil, errors.New("local revocation source: no database")
	}
	l := &LocalSource{db: o.DB, path: o.DB.Path(), sock: filepath.Join(o.Home, api.SocketName),
		maxStale: o.MaxStale, now: o.Now, warn: staleWarner{log: o.Log}}
	if _, err := os.Stat(l.path); err != nil {
		return nil, nil, fmt.Errorf("local revocation source: %w", err)
	}
	var err error
	l.roots, l.issuers, err = l.db.Trust(ctx)
	switch {
	case err == nil:
	case errors.Is(err, ErrDBLocked):
		if l.roots, l.issuers, err = l.chainFromService(ctx); err != nil {
			return nil, nil, fmt.Errorf("local revocation source: the database is held by another process and its admin socket does not answer: %w", err)
		}
	default:
		return nil, nil, fmt.Errorf("local revocation source: %w", err)
	}
	l.mu.Lock()
	err = l.refreshLocked(ctx, true)
	l.mu.Unlock()
	if err != nil {
		return nil, nil, fmt.Errorf("local revocation source: %w", err)
	}
	return l, l.roots[0], nil
}

// Roots implements TrustSource: the roots the CA trusts now, as last read
// from the home.
func (l *LocalSource) Roots() []*x509.Certificate {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.roots
}

// setTrust installs the CA's trust as read; a change drops the service CRL
// source, whose issuers it fixes.
func (l *LocalSource) setTrust(roots, issuers []*x509.Certificate) {
	if sameCerts(roots, l.roots) && sameCerts(issuers, l.issuers) {
		return
	}
	l.roots, l.issuers, l.svc = roots, issuers, nil
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// chainFromService asks dockca serve's admin socket for the trusted roots
// and the live intermediates.
func (l *LocalSource) chainFromService(ctx context.Context) (roots, issuers []*x509.Certificate, err error) {
	ctx, cancel := context.WithTimeout(ctx, socketFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://dockca"+api.PathAdminChain, nil)
	if err != nil {
		return nil, nil, err
	}
	hc := unixHTTPClient(l.sock, socketFetchTimeout)
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s answered %s", l.sock, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, err
	}
	certs, err := tlsbundle.Certs(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("CA chain from %s: %w", l.sock, err)
	}
	for _, c := range certs {
		if c.IsCA && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots = append(roots, c)
		} else {
			issuers = append(issuers, c)
		}
	}
	if len(roots) == 0 || len(issuers) == 0 {
		return nil, nil, fmt.Errorf("CA chain from %s: want a root and an intermediate", l.sock)
	}
	return roots, issuers, nil
}

// refreshLocked brings the data up to date when the database file changed
// (or, with force, always). It never waits on the database lock.
func (l *LocalSource) refreshLocked(ctx context.Context, force bool) error {
	fi, err := os.Stat(l.path)
	if err != nil {
		l.lastErr = fmt.Errorf("the dockca database is unreadable: %w", err)
		return l.lastErr
	}
	stamp := stampOf(fi)
	now := l.now()
	// File times tick at the kernel's coarse clock, and bbolt often
	// rewrites pages without changing the size, so two writes in one tick
	// can leave the same stamp. Like git's "racily clean" index entries, a
	// stamp that was at most a second old when it was read is not trusted.
	changed := force || stamp != l.stamp || l.loadedAt.Sub(l.stamp.mtime) < racyWindow
	if !changed && !(l.viaSvc && now.Sub(l.loadedAt) >= svcRevalidateEvery) {
		if !l.viaSvc {
			l.loadedAt = now // nothing was written: the list is current
		}
		return l.lastErr
	}
	revoked, err := l.db.Revocations(ctx)
	if err == nil {
		var roots, issuers []*x509.Certificate
		if roots, issuers, err = l.db.Trust(ctx); err == nil {
			l.setTrust(roots, issuers)
			l.revoked, l.stamp, l.loadedAt, l.viaSvc, l.lastErr = revoked, stamp, now, false, nil
			return nil
		}
	}
	if !errors.Is(err, ErrDBLocked) {
		l.lastErr = err
		return l.lastErr
	}
	// Held by a writer: dockca serve answers on its admin socket; a CLI
	// command finishes within moments and the next request reloads.
	if _, serr := os.Stat(l.sock); serr != nil {
		l.lastErr = fmt.Errorf("the dockca database is being written by another process (%v)", err)
		return l.lastErr
	}
	if roots, issuers, cerr := l.chainFromService(ctx); cerr == nil {
		l.setTrust(roots, issuers)
	}
	if l.svc == nil {
		svc, serr := NewCRLSource(CRLOptions{URL: "unix://" + l.sock, Socket: l.sock, Root: l.roots[0],
			OtherRoots: l.roots[1:], Issuers: l.issuers, MaxStale: l.maxStale, Now: l.now})
		if serr != nil {
			l.lastErr = serr
			return serr
		}
		l.svc = svc
	}
	fctx, cancel := context.WithTimeout(ctx, socketFetchTimeout)
	defer cancel()
	if serr := l.svc.refresh(fctx); serr != nil {
		l.lastErr = fmt.Errorf("the dockca database is held by dockca serve, whose admin socket did not answer: %w", serr)
		return l.lastErr
	}
	l.stamp, l.loadedAt, l.viaSvc, l.lastErr = stamp, now, true, nil
	return nil
}

// Revoked implements RevocationChecker.
func (l *LocalSource) Revoked(ctx context.Context, cert *x509.Certificate) (*Revocation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.refreshLocked(ctx, false)
	l.warn.observe(l.now(), l.freshnessLocked())
	if err != nil && l.now().Sub(l.loadedAt) > l.maxStale {
		return nil, fmt.Errorf("%w: the revocation list was last confirmed at %s, more than the %s allowed ago (%v)",
			ErrStaleCRL, l.loadedAt.UTC().Format(time.RFC3339), l.maxStale, err)
	}
	if l.viaSvc {
		return l.svc.Revoked(ctx, cert)
	}
	if r := l.revoked[pki.SerialOf(cert)]; r != nil {
		c := *r
		return &c, nil
	}
	return nil, nil
}

// Freshness implements FreshnessReporter: it checks the home first.
func (l *LocalSource) Freshness(ctx context.Context) Freshness {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.refreshLocked(ctx, false)
	return l.freshnessLocked()
}

func (l *LocalSource) freshnessLocked() Freshness {
	f := Freshness{Mode: "local", Source: "the dockca database " + l.path, ConfirmedAt: l.loadedAt, MaxStale: l.maxStale.String()}
	if l.viaSvc {
		f.Source = "the dockca service's admin socket " + l.sock
	}
	if l.lastErr != nil {
		f.Stale, f.Error = true, l.lastErr.Error()
	}
	return f
}

// Run checks the home every svcRevalidateEvery, so that staleness is
// noticed and logged even while no request arrives.
func (l *LocalSource) Run(ctx context.Context) error {
	t := time.NewTicker(svcRevalidateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		l.mu.Lock()
		_ = l.refreshLocked(ctx, false)
		l.warn.observe(l.now(), l.freshnessLocked())
		l.mu.Unlock()
	}
}
