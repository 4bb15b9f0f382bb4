package authz

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/store"
)

// LocalSource answers revocation from the dockca database on this host
// (local mode, --home). It keeps the revoked serials in memory and reloads
// them whenever the database file changes, so a `dockca revoke` takes
// effect on the very next request. Between reloads it holds no lock on the
// file: bbolt locks the whole file, and the admin's CLI must stay able to
// write to it.
type LocalSource struct {
	path     string
	maxStale time.Duration
	now      func() time.Time

	mu       sync.Mutex
	stamp    fileStamp
	revoked  map[string]*store.Revocation
	loadedAt time.Time
}

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

// NewLocalSource opens the database in home once to read the root (the
// plugin's only trust anchor) and the revocations. maxStale bounds how long
// the last revocation list is used while the database stays locked by a
// writer; past it, TLS requests are denied.
func NewLocalSource(ctx context.Context, home string, maxStale time.Duration) (*LocalSource, *x509.Certificate, error) {
	l := &LocalSource{path: store.Path(home), maxStale: maxStale, now: time.Now}
	st, err := store.Open(l.path, &store.Options{ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("local revocation source: %w", err)
	}
	defer st.Close()
	_, root, _, err := ca.LoadCertificates(ctx, st)
	if err != nil {
		return nil, nil, fmt.Errorf("local revocation source: %w", err)
	}
	if err := l.reload(ctx); err != nil {
		return nil, nil, err
	}
	return l, root, nil
}

// reload reads every revocation in one short read transaction.
func (l *LocalSource) reload(ctx context.Context) error {
	fi, err := os.Stat(l.path)
	if err != nil {
		return fmt.Errorf("local revocation source: %w", err)
	}
	stamp := stampOf(fi)
	st, err := store.Open(l.path, &store.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		return fmt.Errorf("local revocation source: %w", err)
	}
	revs, err := st.Revocations(ctx)
	st.Close()
	if err != nil {
		return fmt.Errorf("local revocation source: %w", err)
	}
	m := make(map[string]*store.Revocation, len(revs))
	for _, r := range revs {
		m[r.Serial] = r
	}
	l.revoked, l.stamp, l.loadedAt = m, stamp, l.now()
	return nil
}

// Revoked implements RevocationChecker.
func (l *LocalSource) Revoked(ctx context.Context, cert *x509.Certificate) (*Revocation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fi, err := os.Stat(l.path)
	if err != nil {
		return nil, fmt.Errorf("the dockca database is unreadable: %w", err)
	}
	// File times tick at the kernel's coarse clock, and bbolt often
	// rewrites pages without changing the size, so two writes in one tick
	// can leave the same stamp. Like git's "racily clean" index entries, a
	// stamp that was at most a second old when it was read is not trusted.
	if stampOf(fi) != l.stamp || l.loadedAt.Sub(l.stamp.mtime) < racyWindow {
		if err := l.reload(ctx); err != nil {
			// A writer holds the file (an issuance or revocation in
			// progress, or dockca serve). Until it commits, the list we
			// have is the truth; for longer than max-stale, fail closed.
			if !errors.Is(err, store.ErrLocked) || l.now().Sub(l.loadedAt) > l.maxStale {
				return nil, fmt.Errorf("the revocation list cannot be read (%v); run the plugin with --ca-url when dockca serve holds the database", err)
			}
		}
	}
	if r := l.revoked[SerialHex(cert)]; r != nil {
		return &Revocation{RevokedAt: r.RevokedAt, Reason: r.Reason}, nil
	}
	return nil, nil
}
