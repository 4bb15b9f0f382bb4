package audit

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// TestRealDaemons audits four real dockerds on loopback, set up the ways
// admins actually set them up, and checks each yields exactly the expected
// findings and exit code. The daemons start in parallel to keep the run
// short.
func TestRealDaemons(t *testing.T) {
	dockerdtest.Require(t)
	ours := newTestCA(t, "dockca test")
	other := newTestCA(t, "other")
	roots := []*x509.Certificate{ours.root}

	cases := []struct {
		name       string
		start      func(t *testing.T) *dockerdtest.Daemon
		want       []string
		proto      string
		clientCert string
		exit       int // with --fail-on high
		detail     string
	}{
		{
			name:  "plain tcp",
			start: func(t *testing.T) *dockerdtest.Daemon { return dockerdtest.Start(t, dockerdtest.Options{}) },
			want:  []string{"critical plain-http-api"}, proto: ProtoHTTP, exit: ExitFindings,
			detail: "GET /_ping answered 200, GET /version 200; engine 20.10",
		},
		{
			name: "tls without verification",
			start: func(t *testing.T) *dockerdtest.Daemon {
				_, cert, key := writeFiles(t, t.TempDir(), ours.root, "server-", ours.serverLeaf(t))
				return dockerdtest.Start(t, dockerdtest.Options{TLS: true, Cert: cert, Key: key})
			},
			want: []string{"critical tls-no-client-verify"}, proto: ProtoTLS, clientCert: "not requested", exit: ExitFindings,
			detail: "server does not request a client certificate; GET /_ping answered 200",
		},
		{
			name: "mutual tls with dockca certificates",
			start: func(t *testing.T) *dockerdtest.Daemon {
				dir := t.TempDir()
				ca, cert, key := writeFiles(t, dir, ours.root, "server-", ours.serverLeaf(t))
				writeFiles(t, dir, ours.root, "", ours.leaf(t, leafOpts{client: true}))
				d := dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: ca, Cert: cert, Key: key})
				// The daemon really is usable with a dockca client
				// certificate, so "mtls-ok" is not praise for a dead port.
				out, err := dockerdtest.Docker(t, []string{"DOCKER_CONFIG=" + dir, "DOCKER_HOST=tcp://" + d.Addr,
					"DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + dir}, "version", "--format", "{{.Server.Os}}")
				if err != nil || strings.TrimSpace(out) != "linux" {
					t.Fatalf("docker with a dockca client certificate: %v %q", err, out)
				}
				return d
			},
			want: []string{"info mtls-ok"}, proto: ProtoTLS, clientCert: "required", exit: ExitOK,
			detail: "issuer CN=dockca test Intermediate CA",
		},
		{
			name: "mutual tls with another CA",
			start: func(t *testing.T) *dockerdtest.Daemon {
				ca, cert, key := writeFiles(t, t.TempDir(), other.root, "server-", other.serverLeaf(t))
				return dockerdtest.Start(t, dockerdtest.Options{TLSVerify: true, CACert: ca, Cert: cert, Key: key})
			},
			want: []string{"high cert-foreign-ca", "high client-ca-foreign"}, proto: ProtoTLS, clientCert: "required", exit: ExitFindings,
			detail: "issuer CN=other Intermediate CA",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := tc.start(t)
			eps, err := ParseTargets([]string{d.Addr}, DefaultPorts)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Run(context.Background(), eps, Options{Timeout: 5 * time.Second, Roots: roots})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := findingIDs(r.Findings); !slices.Equal(got, tc.want) {
				t.Fatalf("findings = %q, want %q\n%+v", got, tc.want, r.Findings)
			}
			if !strings.Contains(r.Findings[0].Detail, tc.detail) {
				t.Errorf("detail %q, want it to contain %q", r.Findings[0].Detail, tc.detail)
			}
			tr := r.Targets[0]
			if tr.State != StateOpen || tr.Protocol != tc.proto || tr.ClientCert != tc.clientCert {
				t.Errorf("target = %+v, want open %s, client cert %q", tr, tc.proto, tc.clientCert)
			}
			if got := ExitCode(r, nil, High); got != tc.exit {
				t.Errorf("exit code with --fail-on high = %d, want %d", got, tc.exit)
			}
			if got := ExitCode(r, nil, None); got != ExitOK {
				t.Errorf("exit code with --fail-on none = %d, want 0", got)
			}

			var buf bytes.Buffer
			if err := r.WriteJSON(&buf); err != nil {
				t.Fatal(err)
			}
			var parsed struct {
				Targets []struct {
					Target string `json:"target"`
					Port   int    `json:"port"`
					State  string `json:"state"`
				} `json:"targets"`
				Findings []struct {
					Target, Severity, Finding, Detail, ID string
					Port                                  int
				} `json:"findings"`
			}
			if err := json.Unmarshal(buf.Bytes(), &parsed); err != nil {
				t.Fatalf("JSON output does not parse: %v\n%s", err, buf.String())
			}
			if len(parsed.Targets) != 1 || len(parsed.Findings) != len(tc.want) ||
				parsed.Findings[0].Target != "127.0.0.1" || parsed.Findings[0].Port != eps[0].Port ||
				parsed.Findings[0].Severity != strings.Fields(tc.want[0])[0] {
				t.Errorf("JSON output = %s", buf.String())
			}
			buf.Reset()
			if err := r.WriteTable(&buf); err != nil {
				t.Fatal(err)
			}
			t.Logf("table:\n%s", buf.String())
		})
	}
}
