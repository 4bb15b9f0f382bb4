package serve

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// listenPprof opens the debug profiling listener (--debug-pprof). It only
// ever binds a loopback address: profiles show code paths and timings,
// and /debug/pprof can be made to burn CPU, so they are for an operator
// on the host, never the network.
func listenPprof(addr string) (net.Listener, *http.Server, error) {
	if err := CheckDebugPprof(addr); err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("debug pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// Profiles run for their ?seconds=; no write timeout cuts them short.
	return ln, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, nil
}

// CheckDebugPprof refuses a --debug-pprof address that is not a loopback
// IP and port.
func CheckDebugPprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("debug pprof address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("debug pprof address %q must be a loopback IP such as 127.0.0.1:6060", addr)
	}
	return nil
}

// PprofAddr is the debug profiling listener's address, or "".
func (s *Server) PprofAddr() string {
	if s.pprofLn == nil {
		return ""
	}
	return s.pprofLn.Addr().String()
}
