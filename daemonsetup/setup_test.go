package daemonsetup_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/daemonsetup"
	"github.com/dockca/dockca/internal/testca"
)

// rootOptions points every path of SetupOptions into a temp root, as
// examples/provision-daemon.sh does with ROOT.
func rootOptions(root string) daemonsetup.SetupOptions {
	return daemonsetup.SetupOptions{
		Host:       "docker1.example",
		SANs:       []string{"10.0.0.5"},
		TLSDir:     filepath.Join(root, "etc/docker/tls"),
		ConfigPath: filepath.Join(root, "etc/docker/daemon.json"),
		SystemdDir: filepath.Join(root, "etc/systemd/system/docker.service.d"),
		TTL:        90 * 24 * time.Hour,
	}
}

func TestSetupFreshHostThenIdempotent(t *testing.T) {
	ctx := context.Background()
	c := testca.New(t)
	root := t.TempDir()
	o := rootOptions(root)

	// Dry run on a fresh host: reports everything, writes and issues nothing.
	var out bytes.Buffer
	o.DryRun = true
	res, err := daemonsetup.Setup(ctx, o, c, &out)
	if err != nil || !res.Changed || !res.Issued || !res.DropIn {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 || c.Issued() != 0 {
		t.Fatalf("dry run wrote %v / issued %d", entries, c.Issued())
	}
	if !strings.Contains(out.String(), "would issue") || !strings.Contains(out.String(), "dry run, nothing written") {
		t.Fatalf("dry run output:\n%s", out.String())
	}

	o.DryRun = false
	out.Reset()
	res, err = daemonsetup.Setup(ctx, o, c, &out)
	if err != nil || !res.Changed || !res.Issued || res.Serial == "" {
		t.Fatalf("setup: %+v %v", res, err)
	}
	t.Logf("first run:\n%s", out.String())
	if !strings.Contains(out.String(), "restart dockerd") {
		t.Fatalf("no restart hint:\n%s", out.String())
	}
	for path, mode := range map[string]os.FileMode{
		o.TLSDir: 0o700 | os.ModeDir, filepath.Join(o.TLSDir, "server-key.pem"): 0o600,
		filepath.Join(o.TLSDir, "server-cert.pem"): 0o644, filepath.Join(o.TLSDir, "ca.pem"): 0o644,
	} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v %v, want %v", path, fi.Mode(), err, mode)
		}
	}
	dropIn, _ := os.ReadFile(filepath.Join(o.SystemdDir, "dockca.conf"))
	if !strings.Contains(string(dropIn), "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd\n") {
		t.Fatalf("drop-in:\n%s", dropIn)
	}

	// Second run: nothing issued, nothing written, says so.
	before := snapshot(t, root)
	out.Reset()
	res, err = daemonsetup.Setup(ctx, o, c, &out)
	if err != nil || res.Changed || res.Issued || c.Issued() != 1 {
		t.Fatalf("second run: %+v %v, issued %d", res, err, c.Issued())
	}
	if strings.TrimSpace(out.String()) != "daemon setup: nothing changed" {
		t.Fatalf("second run output:\n%s", out.String())
	}
	equalSnapshots(t, before, snapshot(t, root))
}

// The installed certificate is replaced exactly when it can no longer
// serve: new SAN, new CA root, last third of its life, broken pair.
func TestSetupReissues(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		change func(t *testing.T, o *daemonsetup.SetupOptions, c **testca.CA)
		reason string
	}{
		{"new SAN", func(t *testing.T, o *daemonsetup.SetupOptions, c **testca.CA) {
			o.SANs = append(o.SANs, "docker1.internal")
		}, "does not cover docker1.internal"},
		{"new CA", func(t *testing.T, o *daemonsetup.SetupOptions, c **testca.CA) { *c = testca.New(t) }, "does not hold the CA's current roots"},
		{"expiring", func(t *testing.T, o *daemonsetup.SetupOptions, c **testca.CA) {
			o.Now = func() time.Time { return time.Now().Add(61 * 24 * time.Hour) }
			(*c).SetClock(o.Now)
		}, "last third"},
		{"mismatched key", func(t *testing.T, o *daemonsetup.SetupOptions, c **testca.CA) {
			other, _ := (*c).IssueDaemon(ctx, "x.example", nil, time.Hour)
			os.WriteFile(filepath.Join(o.TLSDir, "server-key.pem"), other.Key, 0o600)
		}, "unusable"},
		{"missing key", func(t *testing.T, o *daemonsetup.SetupOptions, c **testca.CA) {
			os.Remove(filepath.Join(o.TLSDir, "server-key.pem"))
		}, "no server-key.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testca.New(t)
			o := rootOptions(t.TempDir())
			if _, err := daemonsetup.Setup(ctx, o, c, &bytes.Buffer{}); err != nil {
				t.Fatal(err)
			}
			tc.change(t, &o, &c)
			var out bytes.Buffer
			res, err := daemonsetup.Setup(ctx, o, c, &out)
			if err != nil || !res.Issued || !strings.Contains(out.String(), tc.reason) {
				t.Fatalf("%+v %v\n%s", res, err, out.String())
			}
			if res, _ := daemonsetup.Setup(ctx, o, c, &bytes.Buffer{}); res.Changed {
				t.Fatal("not idempotent after re-issue")
			}
		})
	}
	t.Run("loose key mode is tightened", func(t *testing.T) {
		c := testca.New(t)
		o := rootOptions(t.TempDir())
		daemonsetup.Setup(ctx, o, c, &bytes.Buffer{})
		os.Chmod(filepath.Join(o.TLSDir, "server-key.pem"), 0o644)
		res, err := daemonsetup.Setup(ctx, o, c, &bytes.Buffer{})
		if err != nil || !res.Changed || res.Issued {
			t.Fatalf("%+v %v", res, err)
		}
		if fi, _ := os.Stat(filepath.Join(o.TLSDir, "server-key.pem")); fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", fi.Mode())
		}
	})
}

// Bad input and bad daemon.json: a clear error, nothing issued, nothing
// written.
func TestSetupRefuses(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		daemon string // existing daemon.json ("" for none)
		mutate func(*daemonsetup.SetupOptions)
		want   error
	}{
		{"invalid daemon.json", `{"log-level": "warn",,}`, nil, daemonsetup.ErrInvalidConfig},
		{"tls false", `{"tls": false}`, nil, daemonsetup.ErrTLSDisabled},
		{"tlsverify false", `{"tlsverify": false, "hosts": ["unix:///var/run/docker.sock"]}`, nil, daemonsetup.ErrTLSDisabled},
		{"hosts not a list", `{"hosts": "tcp://0.0.0.0:2376"}`, nil, nil},
		{"listen http", "", func(o *daemonsetup.SetupOptions) { o.Listen = []string{"http://0.0.0.0:2376"} }, daemonsetup.ErrInvalidListen},
		{"listen without port", "", func(o *daemonsetup.SetupOptions) { o.Listen = []string{"tcp://0.0.0.0"} }, daemonsetup.ErrInvalidListen},
		{"bad host", "", func(o *daemonsetup.SetupOptions) { o.Host = "docker_1.example" }, daemonsetup.ErrInvalidHost},
		{"bad SAN", "", func(o *daemonsetup.SetupOptions) { o.SANs = []string{"*.example"} }, daemonsetup.ErrInvalidHost},
		{"empty host", "", func(o *daemonsetup.SetupOptions) { o.Host = "" }, daemonsetup.ErrInvalidHost},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testca.New(t)
			root := t.TempDir()
			o := rootOptions(root)
			if tc.daemon != "" {
				writeFile(t, o.ConfigPath, tc.daemon)
			}
			if tc.mutate != nil {
				tc.mutate(&o)
			}
			before := snapshot(t, root)
			_, err := daemonsetup.Setup(ctx, o, c, &bytes.Buffer{})
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
			if c.Issued() != 0 {
				t.Fatal("issued a certificate")
			}
			equalSnapshots(t, before, snapshot(t, root))
		})
	}
}
