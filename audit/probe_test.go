package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a loopback HTTP handler that answers like dockerd (or like
// something else) and remembers every request, so tests can prove the
// audit sends nothing but GET /_ping and GET /version.
type recorder struct {
	mu       sync.Mutex
	requests []string
	status   int  // for /_ping and /version; default 200
	docker   bool // answer with dockerd's headers and /version JSON
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.requests = append(rec.requests, r.Method+" "+r.URL.RequestURI())
	rec.mu.Unlock()
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	if rec.docker {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Server", "Docker/20.10.99 (linux)")
	}
	switch {
	case r.URL.Path == "/_ping":
		w.WriteHeader(status)
		io.WriteString(w, "OK")
	case r.URL.Path == "/version" && rec.docker && status == http.StatusOK:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"Version":"20.10.99","ApiVersion":"1.41","Os":"linux","Arch":"amd64"}`)
	default:
		w.WriteHeader(status)
		io.WriteString(w, "hello")
	}
}

func (rec *recorder) onlyReads(t *testing.T) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.requests {
		if r != "GET /_ping" && r != "GET /version" {
			t.Errorf("audit sent %q; only GET /_ping and GET /version are allowed", r)
		}
	}
}

// serve starts rec on loopback, in TLS when cfg is not nil.
func serve(t *testing.T, rec *recorder, cfg *tls.Config) Endpoint {
	t.Helper()
	srv := httptest.NewUnstartedServer(rec)
	// Handshake failures are the point of these tests; keep them quiet.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if cfg != nil {
		srv.TLS = cfg
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return endpointOf(t, srv.Listener.Addr().String())
}

func endpointOf(t *testing.T, addr string) Endpoint {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return Endpoint{Host: host, Port: p}
}

func findingIDs(fs []Finding) []string {
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.Severity.String()+" "+f.ID)
	}
	slices.Sort(ids)
	return ids
}

func auditOne(t *testing.T, ep Endpoint, o Options) *Report {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	r, err := Run(context.Background(), []Endpoint{ep}, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(r.Targets) != 1 {
		t.Fatalf("want 1 target, got %+v", r.Targets)
	}
	return r
}

// TestGoServers covers every finding with Go servers on loopback, where
// TLS options dockerd does not offer (TLS 1.0, RSA 1024, any client
// certificate) can be set.
func TestGoServers(t *testing.T) {
	ours := newTestCA(t, "dockca test")
	other := newTestCA(t, "other")
	now := time.Now()
	lo := []net.IP{net.IPv4(127, 0, 0, 1)}
	good := ours.serverLeaf(t)
	roots := []*x509.Certificate{ours.root}

	cases := []struct {
		name   string
		plain  bool
		docker bool
		status int
		cfg    *tls.Config
		roots  []*x509.Certificate
		want   []string
		proto  string
		client string
	}{
		{name: "plain docker", plain: true, docker: true, proto: ProtoHTTP,
			want: []string{"critical plain-http-api"}},
		{name: "plain docker refusing", plain: true, docker: true, status: 401, proto: ProtoHTTP,
			want: []string{"high plain-http-unencrypted"}},
		{name: "plain not docker", plain: true, proto: ProtoHTTP},
		{name: "tls no client auth", docker: true, proto: ProtoTLS, client: "not requested", roots: roots,
			cfg:  &tls.Config{Certificates: []tls.Certificate{good}},
			want: []string{"critical tls-no-client-verify"}},
		{name: "tls optional client auth", docker: true, proto: ProtoTLS, client: "optional", roots: roots,
			cfg:  &tls.Config{Certificates: []tls.Certificate{good}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ours.pool()},
			want: []string{"critical tls-no-client-verify"}},
		{name: "tls no client auth refusing", docker: true, status: 403, proto: ProtoTLS, client: "not requested", roots: roots,
			cfg:  &tls.Config{Certificates: []tls.Certificate{good}},
			want: []string{"medium tls-other-auth"}},
		{name: "tls not docker", proto: ProtoTLS, client: "not requested", roots: roots,
			cfg: &tls.Config{Certificates: []tls.Certificate{ours.leaf(t, leafOpts{ips: lo, rsaBits: 1024})}}},
		{name: "any client cert accepted", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg:  &tls.Config{Certificates: []tls.Certificate{good}, ClientAuth: tls.RequireAnyClientCert},
			want: []string{"critical tls-untrusted-client"}},
		{name: "mtls ok", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg:  &tls.Config{Certificates: []tls.Certificate{good}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ours.pool()},
			want: []string{"info mtls-ok"}},
		{name: "mtls ok tls 1.2", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg:  &tls.Config{Certificates: []tls.Certificate{good}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ours.pool(), MaxVersion: tls.VersionTLS12},
			want: []string{"info mtls-ok"}},
		{name: "mtls without roots", docker: true, proto: ProtoTLS, client: "required",
			cfg:  &tls.Config{Certificates: []tls.Certificate{other.serverLeaf(t)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: other.pool()},
			want: []string{"info mtls-ok"}},
		{name: "mtls other CA", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg:  &tls.Config{Certificates: []tls.Certificate{other.serverLeaf(t)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: other.pool()},
			want: []string{"high cert-foreign-ca", "high client-ca-foreign"}},
		{name: "our server cert trusting other client CA", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg:  &tls.Config{Certificates: []tls.Certificate{good}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: other.pool()},
			want: []string{"high client-ca-foreign", "info mtls-ok"}},
		{name: "expired", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg: &tls.Config{Certificates: []tls.Certificate{ours.leaf(t, leafOpts{ips: lo, notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)})},
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ours.pool()},
			want: []string{"high cert-expired", "info mtls-ok"}},
		{name: "not yet valid", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg: &tls.Config{Certificates: []tls.Certificate{ours.leaf(t, leafOpts{ips: lo, notBefore: now.Add(time.Hour), notAfter: now.Add(48 * time.Hour)})},
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ours.pool()},
			want: []string{"high cert-not-yet-valid", "info mtls-ok"}},
		{name: "expiring", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg: &tls.Config{Certificates: []tls.Certificate{ours.leaf(t, leafOpts{ips: lo, notAfter: now.Add(10 * 24 * time.Hour)})},
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ours.pool()},
			want: []string{"high cert-expiring", "info mtls-ok"}},
		{name: "wrong name", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg: &tls.Config{Certificates: []tls.Certificate{ours.leaf(t, leafOpts{ips: []net.IP{net.IPv4(127, 0, 0, 2)}, dns: []string{"docker.example"}})},
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ours.pool()},
			want: []string{"high cert-name-mismatch", "info mtls-ok"}},
		{name: "weak rsa key", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg: &tls.Config{Certificates: []tls.Certificate{ours.leaf(t, leafOpts{ips: lo, rsaBits: 1024})},
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ours.pool()},
			want: []string{"high cert-weak-key", "info mtls-ok"}},
		{name: "tls 1.0 accepted", docker: true, proto: ProtoTLS, client: "required", roots: roots,
			cfg: &tls.Config{Certificates: []tls.Certificate{good}, MinVersion: tls.VersionTLS10,
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ours.pool()},
			want: []string{"high tls-legacy-version", "info mtls-ok"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{docker: tc.docker, status: tc.status}
			var cfg *tls.Config
			if !tc.plain {
				cfg = tc.cfg
			}
			ep := serve(t, rec, cfg)
			r := auditOne(t, ep, Options{Roots: tc.roots})
			if got := findingIDs(r.Findings); !slices.Equal(got, tc.want) {
				t.Errorf("findings = %q, want %q\n%+v", got, tc.want, r.Findings)
			}
			tr := r.Targets[0]
			if tr.State != StateOpen || tr.Protocol != tc.proto || tr.ClientCert != tc.client {
				t.Errorf("target = %+v, want open %s client cert %q", tr, tc.proto, tc.client)
			}
			for _, f := range r.Findings {
				if f.Target != ep.Host || f.Port != ep.Port || f.Finding == "" || f.Detail == "" {
					t.Errorf("incomplete finding %+v", f)
				}
			}
			if tc.docker && tc.status == 0 && len(tc.want) > 0 && strings.HasPrefix(tc.want[0], "critical") && !strings.Contains(r.Findings[0].Detail, "engine 20.10.99, os linux, arch amd64, api 1.41") {
				t.Errorf("detail %q does not report the engine", r.Findings[0].Detail)
			}
			rec.onlyReads(t)
		})
	}
}

// TestHostNameTarget audits by name: the certificate is checked against
// the name the admin typed, not the address it resolved to.
func TestHostNameTarget(t *testing.T) {
	ca := newTestCA(t, "dockca test")
	rec := &recorder{docker: true}
	ep := serve(t, rec, &tls.Config{Certificates: []tls.Certificate{ca.serverLeaf(t)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool()})
	eps, err := ParseTargets([]string{"localhost:" + strconv.Itoa(ep.Port)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := auditOne(t, eps[0], Options{Roots: []*x509.Certificate{ca.root}})
	want := []string{"high cert-name-mismatch", "info mtls-ok"}
	if got := findingIDs(r.Findings); !slices.Equal(got, want) {
		t.Fatalf("findings = %q, want %q", got, want)
	}
	if d := r.Findings[0].Detail; d != "target localhost; certificate names 127.0.0.1" {
		t.Errorf("detail = %q", d)
	}
	rec.onlyReads(t)
}
