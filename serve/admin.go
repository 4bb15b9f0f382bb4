package serve

import (
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
)

// The admin API. While the service runs it holds the database's exclusive
// lock, so every admin command talks to it instead (package admin), over a
// unix socket in the dockca home.
// The socket is 0600 in the 0700 home, and every connection's peer uid
// (SO_PEERCRED) must be the service's own or root: the same people who
// could open dockca.db and unlock it. A token minted this way needs no
// password because the service has the token key unlocked already.

// listenAdmin listens on path, replacing a stale socket left by a crash.
// A live one cannot exist: its owner would hold the database lock.
func listenAdmin(path string, log *slog.Logger) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin socket %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale admin socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return &credListener{UnixListener: ln.(*net.UnixListener), uid: os.Getuid(), log: log}, nil
}

// credListener accepts only connections from uid or root.
type credListener struct {
	*net.UnixListener
	uid int
	log *slog.Logger
}

func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.UnixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == l.uid || uid == 0) {
			return c, nil
		}
		l.log.Warn("admin socket: refused a connection", "peer_uid", uid, "err", err)
		c.Close()
	}
}

// adminRoutes serves the admin API: package admin's handler over the
// service's Local, counted in flight like every other request so the
// authority outlives it.
func (s *Server) adminRoutes() http.Handler {
	h := admin.Handler(s.local, admin.HandlerOptions{Logger: s.log, Revoked: func(api.RevokeResponse) { s.m.revocations.Inc() }})
	mux := http.NewServeMux()
	// A local authorization plugin (dockca authz --home) cannot open the
	// database while the service holds it: it reads the CA chain and the
	// current CRL (with its ETag) here, without waiting on the lock.
	mux.Handle("GET "+api.PathAdminChain, s.instrument("admin_chain", s.handleAdminChain))
	mux.Handle("GET "+api.PathCRL, s.instrument("admin_crl", s.handleCRL))
	mux.Handle("/", h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		mux.ServeHTTP(rec, r)
		s.m.latency.WithLabelValues("admin", strconv.Itoa(rec.status)).Observe(time.Since(start).Seconds())
		s.log.Debug("admin request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"ms", float64(time.Since(start).Microseconds())/1000)
	})
}

func (s *Server) handleAdminChain(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/x-pem-file")
	t := s.auth().Trust()
	_, err := w.Write(append(t.RootsPEM(), pki.PEMChain(t.Issuers...)...))
	return err
}
