package contexts_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/contexts"
	"github.com/dockca/dockca/internal/testca"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// inspected is the part of `docker context inspect` the tests read.
type inspected struct {
	Name      string
	Metadata  map[string]any
	Endpoints map[string]struct{ Host string }
	Storage   struct{ TLSPath string }
}

func inspect(t *testing.T, cfg, name string) inspected {
	t.Helper()
	var out []inspected
	if err := json.Unmarshal([]byte(mustDocker(t, cfg, "context", "inspect", name)), &out); err != nil || len(out) != 1 {
		t.Fatalf("docker context inspect %s: %v %v", name, err, out)
	}
	return out[0]
}

// servedSerial is the serial of the certificate the docker CLI will present
// for a context, read from where docker itself says the TLS files are.
func servedSerial(t *testing.T, cfg, name string) string {
	t.Helper()
	dir := filepath.Join(inspect(t, cfg, name).Storage.TLSPath, "docker")
	cert, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		t.Fatalf("context %s holds a cert and key that do not match: %v", name, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem mode %v, %v", fi.Mode(), err)
	}
	leaf, err := tlsbundle.Leaf(cert)
	if err != nil {
		t.Fatal(err)
	}
	return pki.FormatSerial(leaf.SerialNumber)
}

func serverVersion(t *testing.T, cfg string, args ...string) {
	t.Helper()
	out := mustDocker(t, cfg, append(args, "version", "--format", "{{.Server.Os}}")...)
	if out != "linux" {
		t.Fatalf("docker %v version: %q", args, out)
	}
}

// TestAgainstDockerd drives every command against one real TLS-verifying
// dockerd with the real docker CLI reading what the package wrote.
func TestAgainstDockerd(t *testing.T) {
	ctx := context.Background()
	c := testca.New(t)
	d := tlsDaemon(t, c)
	host := "tcp://" + d.Addr
	cfg := t.TempDir()
	o := contexts.Options{DockerConfigDir: cfg}

	t.Run("add", func(t *testing.T) {
		var out bytes.Buffer
		err := contexts.Add(ctx, contexts.AddOptions{Options: o, Name: "prod", Host: host, Role: "admin", Description: "prod daemon", TTL: month}, c, &out)
		if err != nil {
			t.Fatal(err)
		}
		serverVersion(t, cfg, "--context", "prod")
		ls := mustDocker(t, cfg, "context", "ls", "--format", "{{.Name}}|{{.DockerEndpoint}}|{{.Description}}")
		if !strings.Contains(ls, "prod|"+host+"|prod daemon") {
			t.Fatalf("docker context ls:\n%s", ls)
		}
		in := inspect(t, cfg, "prod")
		marker, _ := in.Metadata["dockca"].(map[string]any)
		if in.Endpoints["docker"].Host != host || marker["client"] != "prod" || marker["role"] != "admin" || marker["serial"] != servedSerial(t, cfg, "prod") {
			t.Fatalf("docker context inspect: %+v", in)
		}
		if !strings.Contains(out.String(), "context prod: "+host) {
			t.Fatalf("output: %s", out.String())
		}
	})

	t.Run("existing name refused", func(t *testing.T) {
		before := c.Issued()
		err := contexts.Add(ctx, contexts.AddOptions{Options: o, Name: "prod", Host: host}, c, &bytes.Buffer{})
		if !errors.Is(err, contexts.ErrExists) || c.Issued() != before {
			t.Fatalf("err %v, issued %d more", err, c.Issued()-before)
		}
	})

	t.Run("use keeps config.json", func(t *testing.T) {
		orig := `{
	"auths": {"registry.example": {"auth": "dXNlcjpwYXNz"}},
	"credsStore": "",
	"proxies": {"default": {"noProxy": "127.0.0.1"}},
	"x-unknown-tool": {"ratio": 1.50, "n": 12345678901234567890},
	"detachKeys": "ctrl-e,e"
}`
		if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(orig), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := contexts.Add(ctx, contexts.AddOptions{Options: o, Name: "dev", Host: host, Client: "alice", Use: true, TTL: month}, c, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		if got := mustDocker(t, cfg, "context", "show"); got != "dev" {
			t.Fatalf("docker context show: %q", got)
		}
		serverVersion(t, cfg) // through the current context
		var before, after map[string]json.RawMessage
		json.Unmarshal([]byte(orig), &before)
		data, _ := os.ReadFile(filepath.Join(cfg, "config.json"))
		if err := json.Unmarshal(data, &after); err != nil {
			t.Fatal(err)
		}
		for k, v := range before {
			var a, b bytes.Buffer
			json.Compact(&a, v)
			json.Compact(&b, after[k])
			if a.String() != b.String() {
				t.Errorf("config.json key %s: %s became %s", k, a.String(), b.String())
			}
		}
		if string(after["currentContext"]) != `"dev"` || len(after) != len(before)+1 {
			t.Fatalf("config.json:\n%s", data)
		}
	})

	t.Run("renew", func(t *testing.T) {
		old := servedSerial(t, cfg, "prod")
		var out bytes.Buffer
		if err := contexts.Renew(ctx, contexts.RenewOptions{Options: o, Names: []string{"prod"}, Force: true}, c, &out); err != nil {
			t.Fatal(err)
		}
		now := servedSerial(t, cfg, "prod")
		if now == old {
			t.Fatal("renew kept the serial")
		}
		serverVersion(t, cfg, "--context", "prod")
		infos, err := contexts.List(ctx, o, c)
		if err != nil {
			t.Fatal(err)
		}
		if i := find(infos, "prod"); i == nil || i.Serial != now || i.Role != "admin" || i.Status != contexts.StatusValid {
			t.Fatalf("after renew: %+v", infos)
		}
		if in := inspect(t, cfg, "prod"); in.Metadata["dockca"].(map[string]any)["serial"] != now {
			t.Fatalf("metadata serial not updated: %+v", in.Metadata)
		}
		if i := find(infos, "prod"); i.NotAfter.Sub(time.Now()) < month-time.Hour {
			t.Fatalf("renew did not keep the requested lifetime: %v", i.NotAfter)
		}
		// Not due: a 30-day certificate is not due within an hour.
		out.Reset()
		if err := contexts.Renew(ctx, contexts.RenewOptions{Options: o, All: true, Within: time.Hour}, c, &out); err != nil {
			t.Fatal(err)
		}
		if servedSerial(t, cfg, "prod") != now || !strings.Contains(out.String(), "not due") {
			t.Fatalf("renew --within 1h renewed a 30-day certificate: %s", out.String())
		}
	})

	t.Run("renew interrupted before swap", func(t *testing.T) {
		old := servedSerial(t, cfg, "prod")
		crash := errors.New("simulated crash")
		var stage string
		reset := contexts.SetHookBeforeSwap(func(s string) error { stage = s; return crash })
		err := contexts.Renew(ctx, contexts.RenewOptions{Options: o, Names: []string{"prod"}, Force: true}, c, &bytes.Buffer{})
		reset()
		if !errors.Is(err, crash) {
			t.Fatalf("err %v", err)
		}
		if servedSerial(t, cfg, "prod") != old {
			t.Fatal("interrupted renew changed the certificate")
		}
		if _, err := os.Stat(stage); !os.IsNotExist(err) {
			t.Fatalf("staging dir %s left behind: %v", stage, err)
		}
		serverVersion(t, cfg, "--context", "prod")
	})

	t.Run("renew interrupted after swap", func(t *testing.T) {
		// A process killed between the swap and the metadata update: the
		// context presents the new pair, List reports it, renew repairs it.
		m, err := c.IssueClient(ctx, "prod", "admin", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := contexts.InstallTLSOnly(o, "prod", m); err != nil {
			t.Fatal(err)
		}
		if servedSerial(t, cfg, "prod") != m.Serial {
			t.Fatal("swap did not install the new pair")
		}
		serverVersion(t, cfg, "--context", "prod")
		infos, _ := contexts.List(ctx, o, c)
		if i := find(infos, "prod"); i == nil || i.Serial != m.Serial {
			t.Fatalf("list after partial renew: %+v", infos)
		}
		// A stale staging directory from a crash is ignored by docker and
		// cleared by the next write.
		stale := filepath.Join(filepath.Dir(inspect(t, cfg, "prod").Storage.TLSPath), ".dockca-stage-"+filepath.Base(inspect(t, cfg, "prod").Storage.TLSPath)+"-123")
		os.MkdirAll(stale, 0o700)
		os.WriteFile(filepath.Join(stale, "key.pem"), []byte("junk"), 0o600)
		if err := contexts.Renew(ctx, contexts.RenewOptions{Options: o, Names: []string{"prod"}, Force: true}, c, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		if in := inspect(t, cfg, "prod"); in.Metadata["dockca"].(map[string]any)["serial"] != servedSerial(t, cfg, "prod") {
			t.Fatal("renew did not repair the metadata")
		}
		if _, err := os.Stat(stale); !os.IsNotExist(err) {
			t.Fatalf("stale staging dir survived: %v", err)
		}
		serverVersion(t, cfg, "--context", "prod")
	})

	t.Run("env into a directory holding other files", func(t *testing.T) {
		dir := t.TempDir()
		keep := filepath.Join(dir, "important.txt")
		os.WriteFile(keep, []byte("do not lose me"), 0o644)
		err := contexts.Env(ctx, contexts.EnvOptions{Options: o, Name: "prod", Dir: dir}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "important.txt") {
			t.Fatalf("env --dir over other files: %v", err)
		}
		if b, err := os.ReadFile(keep); err != nil || string(b) != "do not lose me" {
			t.Fatalf("the directory's own file was lost: %v", err)
		}
		fresh := filepath.Join(t.TempDir(), "certs")
		if err := contexts.Env(ctx, contexts.EnvOptions{Options: o, Name: "prod", Dir: fresh}, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		// Refreshing the same directory later is fine: it holds only ours.
		if err := contexts.Env(ctx, contexts.EnvOptions{Options: o, Name: "prod", Dir: fresh}, &bytes.Buffer{}); err != nil {
			t.Fatalf("env --dir again: %v", err)
		}
	})

	t.Run("env", func(t *testing.T) {
		var out bytes.Buffer
		if err := contexts.Env(ctx, contexts.EnvOptions{Options: o, Name: "prod"}, &out); err != nil {
			t.Fatal(err)
		}
		line := strings.TrimSpace(out.String())
		fields := strings.Fields(strings.TrimPrefix(line, "export "))
		if !strings.HasPrefix(line, "export ") || len(fields) != 3 || fields[1] != "DOCKER_TLS_VERIFY=1" {
			t.Fatalf("env output %q", line)
		}
		// Run it through a real shell, as a user would with eval.
		env := []string{"DOCKER_CONFIG=" + t.TempDir()}
		shOut, err := runSh(t, line+` && env | grep ^DOCKER_`)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range strings.Fields(shOut) {
			env = append(env, kv)
		}
		out2, err := dockerEnv(t, env, "version", "--format", "{{.Server.Os}}")
		if err != nil || strings.TrimSpace(out2) != "linux" {
			t.Fatalf("docker with env %v: %v\n%s", env, err, out2)
		}
		certPath := strings.TrimPrefix(fields[2], "DOCKER_CERT_PATH=")
		for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
			if fi, err := os.Stat(filepath.Join(certPath, f)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v %v", f, fi, err)
			}
		}
		if fi, _ := os.Stat(certPath); fi.Mode().Perm() != 0o700 {
			t.Fatalf("cert dir mode %v", fi.Mode())
		}
	})

	t.Run("foreign contexts are never clobbered", func(t *testing.T) {
		mustDocker(t, cfg, "context", "create", "theirs", "--description", "not ours", "--docker", "host="+host)
		before := c.Issued()
		errs := []error{
			contexts.Add(ctx, contexts.AddOptions{Options: o, Name: "theirs", Host: host}, c, &bytes.Buffer{}),
			contexts.Remove(ctx, contexts.RemoveOptions{Options: o, Names: []string{"theirs"}}, c, &bytes.Buffer{}),
			contexts.Renew(ctx, contexts.RenewOptions{Options: o, Names: []string{"theirs"}}, c, &bytes.Buffer{}),
			contexts.Env(ctx, contexts.EnvOptions{Options: o, Name: "theirs"}, &bytes.Buffer{}),
		}
		for i, err := range errs {
			if !errors.Is(err, contexts.ErrForeign) {
				t.Errorf("operation %d: %v", i, err)
			}
		}
		if err := contexts.Renew(ctx, contexts.RenewOptions{Options: o, All: true, Within: time.Hour}, c, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		if c.Issued() != before {
			t.Fatal("a certificate was issued for a foreign context")
		}
		if in := inspect(t, cfg, "theirs"); in.Metadata["Description"] != "not ours" || in.Metadata["dockca"] != nil {
			t.Fatalf("foreign context changed: %+v", in)
		}
		infos, _ := contexts.List(ctx, o, c)
		if find(infos, "theirs") != nil {
			t.Fatal("list shows a foreign context")
		}
		// --force is the explicit override.
		if err := contexts.Add(ctx, contexts.AddOptions{Options: o, Name: "theirs", Host: host, Force: true}, c, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		serverVersion(t, cfg, "--context", "theirs")
	})

	t.Run("rm --revoke", func(t *testing.T) {
		serial := servedSerial(t, cfg, "dev")
		var out bytes.Buffer
		if err := contexts.Remove(ctx, contexts.RemoveOptions{Options: o, Names: []string{"dev", "theirs"}, Revoke: true}, c, &out); err != nil {
			t.Fatal(err)
		}
		if !c.IsRevoked(serial) {
			t.Fatal("certificate not revoked")
		}
		ls := mustDocker(t, cfg, "context", "ls", "--format", "{{.Name}}")
		if strings.Contains(ls, "dev") || strings.Contains(ls, "theirs") {
			t.Fatalf("docker context ls still lists removed contexts:\n%s", ls)
		}
		// dev was current: docker must not be left pointing at nothing.
		if got := mustDocker(t, cfg, "context", "show"); got != "default" {
			t.Fatalf("current context %q", got)
		}
		if _, err := os.Stat(filepath.Join(cfg, "dockca", "env", "dev")); !os.IsNotExist(err) {
			t.Fatal("env copy survived rm")
		}
	})

	t.Run("list", func(t *testing.T) {
		infos, err := contexts.List(ctx, o, c)
		if err != nil || len(infos) != 1 || infos[0].Name != "prod" || infos[0].Host != host {
			t.Fatalf("%+v %v", infos, err)
		}
		c.RevokeSerial(infos[0].Serial)
		infos, _ = contexts.List(ctx, o, c)
		if infos[0].Status != contexts.StatusRevoked {
			t.Fatalf("status %s", infos[0].Status)
		}
		infos, _ = contexts.List(ctx, o, nil) // the CA cannot tell
		if infos[0].Status != contexts.StatusValid {
			t.Fatalf("status without checker %s", infos[0].Status)
		}
	})
}

const month = 30 * 24 * time.Hour

func find(infos []contexts.Info, name string) *contexts.Info {
	for i := range infos {
		if infos[i].Name == name {
			return &infos[i]
		}
	}
	return nil
}
