package authz

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"maps"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
	"go.yaml.in/yaml/v3"
)

type decisionCase struct {
	Name   string `yaml:"name"`
	Role   string `yaml:"role"`
	Method string `yaml:"method"`
	URI    string `yaml:"uri"`
	Body   string `yaml:"body"`
	// ContentType, when set, is sent as the request's Content-Type header.
	ContentType string `yaml:"content_type"`
	// Headers, when set, are the headers dockerd shows the plugin, exactly.
	// Otherwise the docker CLI's are assumed: Content-Length on every
	// request with a body and on every POST, PUT and PATCH, and
	// application/json with a body.
	Headers map[string]string `yaml:"headers"`
	Allow   bool              `yaml:"allow"`
	Msg     string            `yaml:"msg"`
	Rule    string            `yaml:"rule"`
}

// headers returns what dockerd would show the plugin for the case.
func (c decisionCase) headers() map[string]string {
	h := cliHeaders(c.Method, []byte(c.Body))
	if c.Headers != nil {
		h = maps.Clone(c.Headers)
	}
	if c.ContentType != "" {
		h["Content-Type"] = c.ContentType
	}
	return h
}

func loadCases(t *testing.T, name string) []decisionCase {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var cases []decisionCase
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cases); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cases
}

func newTestAuthorizer(t testing.TB, p *testPKI, rev RevocationChecker, mod func(*Options)) *Authorizer {
	t.Helper()
	if rev == nil {
		rev = newMapRevocations()
	}
	o := Options{Root: p.root, Revocations: rev}
	if mod != nil {
		mod(&o)
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tlsRequest is a request as dockerd shows it to the plugin when the docker
// CLI sends it.
func tlsRequest(l *testLeaf, method, uri string, body []byte) *Request {
	return &Request{User: l.cert.Subject.CommonName, UserAuthNMethod: "TLS", RequestMethod: method,
		RequestURI: uri, RequestBody: body, RequestPeerCertificates: l.chain(), RequestHeaders: cliHeaders(method, body)}
}

// cliHeaders are the headers the docker CLI (Go's net/http) sends: a
// Content-Length on every POST, PUT and PATCH and with every body, and
// application/json with a body.
func cliHeaders(method string, body []byte) map[string]string {
	h := map[string]string{}
	if len(body) > 0 || method == "POST" || method == "PUT" || method == "PATCH" {
		h["Content-Length"] = strconv.Itoa(len(body))
	}
	if len(body) > 0 {
		h["Content-Type"] = "application/json"
	}
	return h
}

func TestDecisionsOfBuiltinRoles(t *testing.T) {
	p := newPKI(t)
	objs := loadObjects(t)
	a := newTestAuthorizer(t, p, nil, func(o *Options) { o.Containers = objs })
	leaves := map[string]*testLeaf{}
	for _, c := range loadCases(t, "testdata/decisions.yaml") {
		t.Run(c.Name, func(t *testing.T) {
			l := leaves[c.Role]
			if l == nil {
				l = p.client(t, "user-"+c.Role, c.Role)
				leaves[c.Role] = l
			}
			var body []byte
			if c.Body != "" {
				body = []byte(c.Body)
			}
			req := tlsRequest(l, c.Method, c.URI, body)
			req.RequestHeaders = c.headers()
			d := a.Decide(context.Background(), req)
			if d.Allow != c.Allow {
				t.Fatalf("allow = %v, want %v (msg %q, rule %q)", d.Allow, c.Allow, d.Msg, d.Rule)
			}
			if !c.Allow && !strings.Contains(d.Msg, c.Msg) {
				t.Errorf("msg = %q, want it to contain %q", d.Msg, c.Msg)
			}
			if c.Allow && d.Msg != "" {
				t.Errorf("allowed with message %q", d.Msg)
			}
			if c.Rule != "" && d.Rule != c.Rule {
				t.Errorf("rule = %q, want %q", d.Rule, c.Rule)
			}
			if d.User != l.cert.Subject.CommonName || d.Serial != pki.SerialOf(l.cert) || (d.Rule != "unknown-role" && string(d.Role) != c.Role) {
				t.Errorf("decision lacks who: %+v", d)
			}
		})
	}
}

func TestCertificateChecks(t *testing.T) {
	p := newPKI(t)
	rev := newMapRevocations()
	a := newTestAuthorizer(t, p, rev, nil)
	other := newPKI(t)
	now := time.Now()
	good := p.client(t, "alice", "admin")
	revoked := p.client(t, "mallory", "admin")
	rev.revoke(revoked.cert, "key-compromise")

	rootSigned := &testLeaf{pki: p}
	{
		l := p.client(t, "direct", "readonly")
		tmpl := *l.cert
		tmpl.SerialNumber = randSerial(t)
		rootSigned.cert = sign(t, &tmpl, p.root, l.key.Public(), p.rootKey)
	}

	cases := []struct {
		name    string
		req     *Request
		allow   bool
		rule    string
		msgPart string
	}{
		{"valid admin", tlsRequest(good, "POST", "/v1.41/swarm/init", nil), true, "admin", ""},
		{"revoked", tlsRequest(revoked, "GET", "/v1.41/_ping", nil), false, "revoked",
			"dockca: certificate " + pki.SerialOf(revoked.cert) + " (mallory) was revoked at "},
		{"expired", tlsRequest(p.client(t, "old", "admin", withValidity(now.Add(-48*time.Hour), now.Add(-time.Hour))), "GET", "/_ping", nil),
			false, "expired", "(old) expired at"},
		{"not yet valid", tlsRequest(p.client(t, "future", "admin", withValidity(now.Add(time.Hour), now.Add(2*time.Hour))), "GET", "/_ping", nil),
			false, "not-yet-valid", "check the clocks"},
		{"other authority", tlsRequest(other.client(t, "eve", "admin"), "GET", "/_ping", nil), false, "untrusted",
			"(eve) is not issued by this host's dockca authority"},
		{"other authority's leaf with our intermediate", &Request{User: "eve", UserAuthNMethod: "TLS", RequestMethod: "GET", RequestURI: "/_ping",
			RequestPeerCertificates: [][]byte{pemCert(other.client(t, "eve", "admin").cert), pemCert(p.inter)}}, false, "untrusted", "not issued by"},
		{"server certificate as client", tlsRequest(p.client(t, "srv", "admin", withEKU(x509.ExtKeyUsageServerAuth)), "GET", "/_ping", nil),
			false, "untrusted", "not issued by"},
		{"missing intermediate", &Request{User: "alice", UserAuthNMethod: "TLS", RequestMethod: "GET", RequestURI: "/_ping",
			RequestPeerCertificates: [][]byte{pemCert(good.cert)}}, false, "untrusted", ""},
		{"leaf signed by the root", &Request{User: "direct", RequestMethod: "GET", RequestURI: "/_ping",
			RequestPeerCertificates: [][]byte{pemCert(rootSigned.cert)}}, true, "read", ""},
		{"no role", tlsRequest(p.client(t, "norole", "", withOU()), "GET", "/_ping", nil), false, "no-role", "carries 0 roles"},
		{"two roles", tlsRequest(p.client(t, "two", "", withOU("readonly", "admin")), "GET", "/_ping", nil), false, "no-role", "carries 2 roles"},
		{"user mismatch", func() *Request { r := tlsRequest(good, "GET", "/_ping", nil); r.User = "bob"; return r }(),
			false, "user-mismatch", `does not match the user "bob"`},
		{"not pem", &Request{User: "alice", RequestMethod: "GET", RequestURI: "/_ping", RequestPeerCertificates: [][]byte{[]byte("hello")}},
			false, "bad-certificate", "is not PEM"},
		{"pem with garbage", &Request{User: "alice", RequestMethod: "GET", RequestURI: "/_ping",
			RequestPeerCertificates: [][]byte{append(pemCert(good.cert), "junk"...)}}, false, "bad-certificate", "trailing data"},
		{"local socket", &Request{RequestMethod: "POST", RequestURI: "/v1.41/containers/create"}, true, "local", ""},
		{"other authn without cert", &Request{User: "bob", UserAuthNMethod: "krb", RequestMethod: "GET", RequestURI: "/_ping"},
			false, "unknown-authn", "without a certificate"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if i > 0 && a.issuers.get(p.inter.Raw) == nil {
				// The refusals below must hold on the one-signature path too.
				t.Fatal("the first valid request did not cache the verified intermediate")
			}
			d := a.Decide(context.Background(), c.req)
			if d.Allow != c.allow || d.Rule != c.rule || !strings.Contains(d.Msg, c.msgPart) {
				t.Fatalf("got allow=%v rule=%q msg=%q; want allow=%v rule=%q msg containing %q", d.Allow, d.Rule, d.Msg, c.allow, c.rule, c.msgPart)
			}
		})
	}

	t.Run("deny local", func(t *testing.T) {
		a := newTestAuthorizer(t, p, rev, func(o *Options) { o.DenyLocal = true })
		d := a.Decide(context.Background(), &Request{RequestMethod: "GET", RequestURI: "/_ping"})
		if d.Allow || !strings.Contains(d.Msg, "without a client certificate") {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("revocation check fails closed", func(t *testing.T) {
		a := newTestAuthorizer(t, p, failingChecker{}, nil)
		d := a.Decide(context.Background(), tlsRequest(good, "GET", "/_ping", nil))
		if d.Allow || d.Rule != "revocation-unknown" || !strings.Contains(d.Msg, "database is locked") {
			t.Fatalf("%+v", d)
		}
	})
}

type failingChecker struct{}

func (failingChecker) Revoked(context.Context, *x509.Certificate) (*Revocation, error) {
	return nil, errString("database is locked")
}

type errString string

func (e errString) Error() string { return string(e) }

func TestSerialHex(t *testing.T) {
	p := newPKI(t)
	for i := 0; i < 20; i++ {
		s := pki.SerialOf(p.client(t, "x", "admin").cert)
		if len(s)%2 != 0 || strings.ToLower(s) != s {
			t.Fatalf("serial %q is not even-length lowercase hex", s)
		}
	}
}

func TestChainCacheHonoursValidity(t *testing.T) {
	p := newPKI(t)
	clock := &fakeClock{t: time.Now()}
	a := newTestAuthorizer(t, p, nil, func(o *Options) { o.Now = clock.now })
	l := p.client(t, "short", "readonly", withValidity(clock.now().Add(-time.Minute), clock.now().Add(time.Minute)))
	req := tlsRequest(l, "GET", "/_ping", nil)
	if d := a.Decide(context.Background(), req); !d.Allow {
		t.Fatalf("fresh: %+v", d)
	}
	if a.chains.get(chainKey(req.RequestPeerCertificates), clock.now()) == nil {
		t.Fatal("verified chain was not cached")
	}
	clock.add(2 * time.Minute)
	if d := a.Decide(context.Background(), req); d.Allow || d.Rule != "expired" {
		t.Fatalf("after expiry with a warm cache: %+v", d)
	}
	// A cached chain with a different peer list (no intermediate) is not
	// a hit for it.
	other := &Request{User: "short", RequestMethod: "GET", RequestURI: "/_ping", RequestPeerCertificates: [][]byte{pemCert(l.cert)}}
	clock.add(-2 * time.Minute)
	if d := a.Decide(context.Background(), other); d.Allow || d.Rule != "untrusted" {
		t.Fatalf("leaf alone: %+v", d)
	}
}

// fakeObjects stands in for dockerd's inspect answers in the decision
// tables (testdata/objects.yaml); the end-to-end tests use a real dockerd.
type fakeObjects struct {
	containers map[string]*ContainerInfo
	execs      map[string]string
	volumes    map[string]*VolumeInfo
	lookups    int
}

func loadObjects(t testing.TB) *fakeObjects {
	t.Helper()
	b, err := os.ReadFile("testdata/objects.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Containers map[string]any    `yaml:"containers"`
		Execs      map[string]string `yaml:"execs"`
		Volumes    map[string]any    `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	f := &fakeObjects{containers: map[string]*ContainerInfo{}, execs: doc.Execs, volumes: map[string]*VolumeInfo{}}
	// Through JSON, as the plugin decodes dockerd's answers.
	viaJSON := func(in, out any) {
		raw, err := json.Marshal(in)
		if err == nil {
			err = json.Unmarshal(raw, out)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, c := range doc.Containers {
		var ci ContainerInfo
		viaJSON(c, &ci)
		f.containers[name] = &ci
		f.containers[ci.ID] = &ci
	}
	for name, v := range doc.Volumes {
		var vi VolumeInfo
		viaJSON(v, &vi)
		f.volumes[name] = &vi
	}
	return f
}

func (f *fakeObjects) Container(_ context.Context, ref string) (*ContainerInfo, error) {
	f.lookups++
	if c, ok := f.containers[ref]; ok {
		return c, nil
	}
	return nil, ErrNoSuchObject
}

func (f *fakeObjects) ExecContainer(_ context.Context, id string) (string, error) {
	if c, ok := f.execs[id]; ok {
		return f.containers[c].ID, nil
	}
	return "", ErrNoSuchObject
}

func (f *fakeObjects) Volume(_ context.Context, name string) (*VolumeInfo, error) {
	if v, ok := f.volumes[name]; ok {
		return v, nil
	}
	return nil, ErrNoSuchObject
}
