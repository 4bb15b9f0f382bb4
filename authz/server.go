package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// PluginDir is where dockerd discovers legacy plugins by socket name.
const PluginDir = "/run/docker/plugins"

// ErrSocketInUse means another process already serves the plugin socket.
var ErrSocketInUse = errors.New("plugin socket is in use")

// NewHandler serves the plugin protocol for a. Malformed requests are denied
// with a message; the handler keeps serving.
func NewHandler(a *Authorizer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.Status(r.Context()))
	})
	mux.HandleFunc("POST "+pathActivate, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string][]string{"Implements": {"authz"}})
	})
	mux.HandleFunc("POST "+pathAuthZReq, func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeRequest(r.Body, r.ContentLength)
		if err != nil {
			writeJSON(w, Response{Allow: false, Msg: "dockca: " + err.Error()})
			return
		}
		d := a.Decide(r.Context(), req)
		writeJSON(w, Response{Allow: d.Allow, Msg: d.Msg})
	})
	// The request was judged before dockerd ran it; the response adds
	// nothing to decide on, but it must still be a well-formed request.
	mux.HandleFunc("POST "+pathAuthZRes, func(w http.ResponseWriter, r *http.Request) {
		if err := checkResponseCall(r.Body, r.ContentLength); err != nil {
			writeJSON(w, Response{Allow: false, Msg: "dockca: " + err.Error()})
			return
		}
		writeJSON(w, Response{Allow: true})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", pluginMedia)
	_ = json.NewEncoder(w).Encode(v)
}

// SocketPath returns the socket dockerd looks for plugin name at.
func SocketPath(name string) string {
	return filepath.Join(PluginDir, name+".sock")
}

// Serve listens on the plugin socket and serves until ctx is cancelled, then
// shuts down gracefully and removes the socket. While it is not serving,
// dockerd fails every request that needs the plugin: restart it to recover.
func Serve(ctx context.Context, o Options) error {
	if o.Name == "" {
		o.Name = "dockca"
	}
	a, err := New(o)
	if err != nil {
		return err
	}
	if o.Socket == "" {
		o.Socket = SocketPath(o.Name)
	}
	l, err := listenSocket(o.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(o.Socket)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	if r, ok := o.Revocations.(Runner); ok {
		go func() { runErr <- r.Run(ctx) }()
	}
	go a.RunPolicyReload(ctx, o.PolicyReload, o.PolicyEvery, o.Log)
	srv := &http.Server{Handler: NewHandler(a), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve plugin: %w", err)
	case err := <-runErr:
		if err != nil && ctx.Err() == nil {
			_ = srv.Close()
			return fmt.Errorf("serve plugin: revocation refresher stopped: %w", err)
		}
		<-ctx.Done()
	case <-ctx.Done():
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down plugin: %w", err)
	}
	return nil
}

// listenSocket creates the plugin directory (0755, as dockerd expects),
// removes a stale socket left by a crash, refuses to steal a live one, and
// leaves the new socket 0600 (dockerd connects as root).
func listenSocket(sock string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return nil, fmt.Errorf("listen on plugin socket: %w", err)
	}
	if fi, err := os.Lstat(sock); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen on plugin socket: %s exists and is not a socket", sock)
		}
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on plugin socket %s: %w", sock, ErrSocketInUse)
		}
		if err := os.Remove(sock); err != nil {
			return nil, fmt.Errorf("remove stale plugin socket: %w", err)
		}
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listen on plugin socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on plugin socket: %w", err)
	}
	return l, nil
}
