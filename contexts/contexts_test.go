package contexts_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/golden"

	"github.com/dockca/dockca/contexts"
	"github.com/dockca/dockca/internal/testca"
)

// Bad input must be refused before the CA is asked and before anything is
// written.
func TestAddRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	c := testca.New(t)
	closed := "tcp://" + closedPort(t)
	tests := []struct {
		name, host string
		want       error
	}{
		{"", "tcp://127.0.0.1:2376", contexts.ErrInvalidName},
		{"default", "tcp://127.0.0.1:2376", contexts.ErrInvalidName},
		{"a", "tcp://127.0.0.1:2376", contexts.ErrInvalidName},
		{"-prod", "tcp://127.0.0.1:2376", contexts.ErrInvalidName},
		{"prod/eu", "tcp://127.0.0.1:2376", contexts.ErrInvalidName},
		{"prod eu", "tcp://127.0.0.1:2376", contexts.ErrInvalidName},
		{"../x", "tcp://127.0.0.1:2376", contexts.ErrInvalidName},
		{"prod", "127.0.0.1:2376", contexts.ErrInvalidHost},
		{"prod", "https://127.0.0.1:2376", contexts.ErrInvalidHost},
		{"prod", "unix:///var/run/docker.sock", contexts.ErrInvalidHost},
		{"prod", "ssh://root@127.0.0.1", contexts.ErrInvalidHost},
		{"prod", "tcp://127.0.0.1", contexts.ErrInvalidHost},
		{"prod", "tcp://:2376", contexts.ErrInvalidHost},
		{"prod", "tcp://127.0.0.1:0", contexts.ErrInvalidHost},
		{"prod", "tcp://127.0.0.1:70000", contexts.ErrInvalidHost},
		{"prod", "tcp://127.0.0.1:2376/v1.41", contexts.ErrInvalidHost},
		{"prod", "tcp://user@127.0.0.1:2376", contexts.ErrInvalidHost},
		{"prod", "tcp://127.0.0.1:2376?x=1", contexts.ErrInvalidHost},
		{"prod", "tcp://127.0.0.1:ab", contexts.ErrInvalidHost},
		{"prod", "", contexts.ErrInvalidHost},
		{"prod", closed, contexts.ErrUnreachable},
	}
	for _, tc := range tests {
		t.Run(tc.name+" "+tc.host, func(t *testing.T) {
			cfg := t.TempDir()
			err := contexts.Add(ctx, contexts.AddOptions{Options: contexts.Options{DockerConfigDir: cfg}, Name: tc.name, Host: tc.host, Use: true, CheckTimeout: time.Second}, c, &bytes.Buffer{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
			if c.Issued() != 0 {
				t.Fatal("a certificate was issued for bad input")
			}
			if entries, _ := os.ReadDir(cfg); len(entries) > 1 {
				t.Fatalf("docker config dir has %v", entries)
			}
		})
	}
}

func TestParseHostNormalises(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://127.0.0.1:2376":       "tcp://127.0.0.1:2376",
		"tcp://docker.example:2376/": "tcp://docker.example:2376",
		"tcp://[::1]:2376":           "tcp://[::1]:2376",
	} {
		got, err := contexts.ParseHost(in)
		if err != nil || got != want {
			t.Errorf("ParseHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestAddRefusesUnwritableConfig(t *testing.T) {
	ctx := context.Background()
	c := testca.New(t)
	notADir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notADir, []byte("x"), 0o600)
	dirs := map[string]string{"path under a file": filepath.Join(notADir, "docker")}
	// Root ignores permission bits, so a read-only mount is the honest way
	// to make a directory unwritable here.
	ro := t.TempDir()
	if err := syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_RDONLY, ""); err == nil {
		t.Cleanup(func() { syscall.Unmount(ro, 0) })
		dirs["read-only filesystem"] = ro
	} else if os.Geteuid() == 0 {
		t.Fatalf("mount read-only tmpfs: %v", err)
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			err := contexts.Add(ctx, contexts.AddOptions{Options: contexts.Options{DockerConfigDir: dir}, Name: "prod", Host: "tcp://127.0.0.1:2376", SkipHostCheck: true}, c, &bytes.Buffer{})
			if err == nil || c.Issued() != 0 {
				t.Fatalf("err %v, issued %d", err, c.Issued())
			}
			t.Log(err)
		})
	}
}

func TestUseRefusesMalformedConfigJSON(t *testing.T) {
	ctx := context.Background()
	c := testca.New(t)
	cfg := t.TempDir()
	bad := []byte(`{"auths": {`)
	os.WriteFile(filepath.Join(cfg, "config.json"), bad, 0o600)
	err := contexts.Add(ctx, contexts.AddOptions{Options: contexts.Options{DockerConfigDir: cfg}, Name: "prod", Host: "tcp://127.0.0.1:2376", SkipHostCheck: true, Use: true}, c, &bytes.Buffer{})
	if err == nil || c.Issued() != 0 {
		t.Fatalf("err %v, issued %d", err, c.Issued())
	}
	if got, _ := os.ReadFile(filepath.Join(cfg, "config.json")); !bytes.Equal(got, bad) {
		t.Fatalf("config.json changed to %q", got)
	}
	if _, err := os.Stat(filepath.Join(cfg, "contexts", "meta")); !os.IsNotExist(err) {
		t.Fatal("a context was written")
	}
}

func TestRemoveAndRenewRefuse(t *testing.T) {
	ctx := context.Background()
	c := testca.New(t)
	o := contexts.Options{DockerConfigDir: t.TempDir()}
	if err := contexts.Add(ctx, contexts.AddOptions{Options: o, Name: "prod", Host: "tcp://127.0.0.1:2376", SkipHostCheck: true}, c, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if err := contexts.Remove(ctx, contexts.RemoveOptions{Options: o, Names: []string{"prod", "nope"}}, nil, &bytes.Buffer{}); !errors.Is(err, contexts.ErrNotFound) {
		t.Fatalf("rm of a missing name: %v", err)
	}
	if err := contexts.Remove(ctx, contexts.RemoveOptions{Options: o, Names: []string{"prod"}, Revoke: true}, nil, &bytes.Buffer{}); !errors.Is(err, contexts.ErrNoRevoker) {
		t.Fatalf("rm --revoke without a CA: %v", err)
	}
	for _, ro := range []contexts.RenewOptions{{Options: o}, {Options: o, All: true, Names: []string{"prod"}}} {
		if err := contexts.Renew(ctx, ro, c, &bytes.Buffer{}); err == nil {
			t.Fatalf("renew %+v accepted", ro)
		}
	}
	infos, err := contexts.List(ctx, o, nil)
	if err != nil || len(infos) != 1 {
		t.Fatalf("refused operations changed the contexts: %+v %v", infos, err)
	}
}

// Statuses follow the certificate file and the clock.
func TestListStatus(t *testing.T) {
	ctx := context.Background()
	c := testca.New(t)
	o := contexts.Options{DockerConfigDir: t.TempDir()}
	for name, ttl := range map[string]time.Duration{"long": 30 * 24 * time.Hour, "short": 3 * 24 * time.Hour} {
		if err := contexts.Add(ctx, contexts.AddOptions{Options: o, Name: name, Host: "tcp://127.0.0.1:2376", SkipHostCheck: true, TTL: ttl}, c, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(at time.Time, want map[string]contexts.Status) {
		t.Helper()
		o := o
		o.Now = func() time.Time { return at }
		infos, err := contexts.List(ctx, o, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range infos {
			if i.Status != want[i.Name] {
				t.Errorf("at %v %s: %s (%s), want %s", at, i.Name, i.Status, i.Problem, want[i.Name])
			}
		}
	}
	now := time.Now()
	check(now, map[string]contexts.Status{"long": contexts.StatusValid, "short": contexts.StatusExpiring})
	check(now.Add(4*24*time.Hour), map[string]contexts.Status{"long": contexts.StatusValid, "short": contexts.StatusExpired})
	check(now.Add(24*24*time.Hour), map[string]contexts.Status{"long": contexts.StatusExpiring, "short": contexts.StatusExpired})

	// A key that does not belong to the certificate is reported, not hidden.
	meta := filepath.Join(o.DockerConfigDir, "contexts", "tls")
	out, _ := exec.Command("sh", "-c", "ls "+meta+"/*/docker/key.pem").Output()
	keys := bytes.Fields(out)
	if len(keys) != 2 {
		t.Fatalf("key files: %q", out)
	}
	k0, _ := os.ReadFile(string(keys[0]))
	os.WriteFile(string(keys[1]), k0, 0o600)
	infos, _ := contexts.List(ctx, o, c)
	invalid := 0
	for _, i := range infos {
		if i.Status == contexts.StatusInvalid {
			invalid++
		}
	}
	if invalid != 1 {
		t.Fatalf("mismatched pair not reported: %+v", infos)
	}
}

func TestWritersGolden(t *testing.T) {
	na := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	infos := []contexts.Info{
		{Name: "prod", Host: "tcp://docker1.example:2376", Client: "prod", Role: "admin", Serial: "1f", NotAfter: na, Status: contexts.StatusValid, Current: true, Description: "prod daemon"},
		{Name: "ci", Host: "tcp://10.0.0.5:2376", Client: "ci-runner", Serial: "2a", NotAfter: na.Add(-48 * time.Hour), Status: contexts.StatusRevoked},
	}
	for file, write := range map[string]func(*bytes.Buffer) error{
		"ls.golden":            func(b *bytes.Buffer) error { return contexts.WriteTable(b, infos) },
		"ls.json.golden":       func(b *bytes.Buffer) error { return contexts.WriteJSON(b, infos) },
		"ls-empty.json.golden": func(b *bytes.Buffer) error { return contexts.WriteJSON(b, nil) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		golden.Assert(t, file, b.Bytes())
	}
}

// Without RENAME_EXCHANGE the old directory is moved aside first; the
// result must still be exactly the new, matching pair and no leftovers.
func TestSwapFallback(t *testing.T) {
	ctx := context.Background()
	c := testca.New(t)
	o := contexts.Options{DockerConfigDir: t.TempDir()}
	if err := contexts.Add(ctx, contexts.AddOptions{Options: o, Name: "prod", Host: "tcp://127.0.0.1:2376", SkipHostCheck: true, TTL: month}, c, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	defer contexts.SetNoExchange()()
	if err := contexts.Renew(ctx, contexts.RenewOptions{Options: o, Names: []string{"prod"}, Force: true}, c, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	infos, err := contexts.List(ctx, o, c)
	if err != nil || len(infos) != 1 || infos[0].Status != contexts.StatusValid || c.Issued() != 2 {
		t.Fatalf("%+v %v", infos, err)
	}
	entries, _ := os.ReadDir(filepath.Join(o.DockerConfigDir, "contexts", "tls"))
	if len(entries) != 1 {
		t.Fatalf("leftovers beside the context's TLS dir: %v", entries)
	}
}
