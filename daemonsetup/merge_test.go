package daemonsetup_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/golden"

	"github.com/dockca/dockca/daemonsetup"
)

// The authz plugin edit the lead will run through MergeDaemonConfig.

func tlsEdit(listen ...string) func(map[string]json.RawMessage) error {
	return daemonsetup.TLSEdit("/etc/docker/tls/ca.pem", "/etc/docker/tls/server-cert.pem", "/etc/docker/tls/server-key.pem", listen)
}

// Each testdata/merge-NAME.json is merged with an edit and compared with
// testdata/merge-NAME.golden; unrelated keys must keep order and exact text.
func TestMergeGolden(t *testing.T) {
	for name, edit := range map[string]func(map[string]json.RawMessage) error{
		"existing": tlsEdit("tcp://0.0.0.0:2376"),
		"absent":   tlsEdit("tcp://0.0.0.0:2376", "tcp://[::]:2376"),
		"authz":    daemonsetup.AddAuthorizationPlugin("dockca"),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "daemon.json")
			orig, err := os.ReadFile(filepath.Join("testdata", "merge-"+name+".json"))
			if errors.Is(err, os.ErrNotExist) {
				orig = nil // the file does not exist on the host
			} else if err != nil {
				t.Fatal(err)
			} else {
				os.WriteFile(path, orig, 0o640)
			}
			changed, changes, err := daemonsetup.MergeDaemonConfig(path, edit, false)
			if err != nil || !changed {
				t.Fatalf("changed %v, err %v", changed, err)
			}
			got, _ := os.ReadFile(path)
			var report strings.Builder
			for _, c := range changes {
				report.WriteString(c.String() + "\n")
			}
			golden.Assert(t, "merge-"+name+".golden", append(got, []byte("--- changes\n"+report.String())...))
			if orig != nil {
				bak, _ := os.ReadFile(path + ".bak")
				if string(bak) != string(orig) {
					t.Fatalf("backup differs from the original")
				}
				if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
					t.Fatalf("mode not kept: %v", fi.Mode())
				}
			} else if _, err := os.Stat(path + ".bak"); !os.IsNotExist(err) {
				t.Fatal("backup of a file that did not exist")
			}
			// The same edit again changes nothing and writes nothing.
			before := snapshot(t, dir)
			changed, changes, err = daemonsetup.MergeDaemonConfig(path, edit, false)
			if err != nil || changed || len(changes) != 0 {
				t.Fatalf("second merge: %v %v %v", changed, changes, err)
			}
			equalSnapshots(t, before, snapshot(t, dir))
		})
	}
}

func TestMergeRefusesAndDryRun(t *testing.T) {
	tests := []struct {
		name, content string
		edit          func(map[string]json.RawMessage) error
		want          error
	}{
		{"not json", `{"debug": true,`, daemonsetup.AddAuthorizationPlugin("dockca"), daemonsetup.ErrInvalidConfig},
		{"array", `["hosts"]`, daemonsetup.AddAuthorizationPlugin("dockca"), daemonsetup.ErrInvalidConfig},
		{"trailing", `{"debug": true} {}`, daemonsetup.AddAuthorizationPlugin("dockca"), daemonsetup.ErrInvalidConfig},
		{"duplicate key", `{"debug": true, "debug": false}`, daemonsetup.AddAuthorizationPlugin("dockca"), daemonsetup.ErrInvalidConfig},
		{"tls off", `{"tls": false}`, tlsEdit("tcp://0.0.0.0:2376"), daemonsetup.ErrTLSDisabled},
		{"tlsverify off", `{"tlsverify": false}`, tlsEdit("tcp://0.0.0.0:2376"), daemonsetup.ErrTLSDisabled},
		{"plain tcp kept by another edit", `{"hosts": ["tcp://0.0.0.0:2375"]}`, daemonsetup.AddAuthorizationPlugin("dockca"), daemonsetup.ErrPlainTCP},
		{"plain tcp on a name", `{"hosts": ["tcp://docker.example:2375"]}`, daemonsetup.AddAuthorizationPlugin("dockca"), daemonsetup.ErrPlainTCP},
		{"edit error", `{}`, func(map[string]json.RawMessage) error { return errTest }, errTest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "daemon.json")
			os.WriteFile(path, []byte(tc.content), 0o644)
			before := snapshot(t, dir)
			_, _, err := daemonsetup.MergeDaemonConfig(path, tc.edit, false)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
			equalSnapshots(t, before, snapshot(t, dir))
		})
	}
	t.Run("dry run", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "daemon.json")
		os.WriteFile(path, []byte(`{"debug": true}`), 0o644)
		before := snapshot(t, dir)
		changed, changes, err := daemonsetup.MergeDaemonConfig(path, daemonsetup.AddAuthorizationPlugin("dockca"), true)
		if err != nil || !changed || len(changes) != 1 || changes[0].String() != `authorization-plugins: (absent) -> ["dockca"]` {
			t.Fatalf("%v %v %v", changed, changes, err)
		}
		equalSnapshots(t, before, snapshot(t, dir))
	})
	t.Run("loopback plain tcp is allowed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "daemon.json")
		os.WriteFile(path, []byte(`{"hosts": ["tcp://127.0.0.1:2375", "tcp://localhost:2375", "tcp://[::1]:2375"]}`), 0o644)
		if _, _, err := daemonsetup.MergeDaemonConfig(path, daemonsetup.AddAuthorizationPlugin("dockca"), false); err != nil {
			t.Fatal(err)
		}
	})
}

var errTest = errors.New("test edit failed")

func TestParseListen(t *testing.T) {
	good := map[string]string{
		"tcp://0.0.0.0:2376":         "tcp://0.0.0.0:2376",
		"tcp://[::]:2376":            "tcp://[::]:2376",
		"tcp://docker.example:2376/": "tcp://docker.example:2376",
		"unix:///run/docker.sock":    "unix:///run/docker.sock",
	}
	for in, want := range good {
		if got, err := daemonsetup.ParseListen(in); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0.0.0.0:2376", "tcp://0.0.0.0", "tcp://:2376", "tcp://0.0.0.0:0", "http://0.0.0.0:2376",
		"fd://", "ssh://host", "unix://relative.sock", "unix://host/x.sock", "tcp://0.0.0.0:2376/x", "tcp://u@h:1"} {
		if _, err := daemonsetup.ParseListen(bad); !errors.Is(err, daemonsetup.ErrInvalidListen) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

// CheckListeners reads hosts the way dockerd does: an entry without a
// scheme is tcp, surrounding space is ignored, local sockets are fine.
func TestCheckListenersParsesHostsLikeDockerd(t *testing.T) {
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"unix:///var/run/docker.sock", true},
		{"fd://", true},
		{"tcp://127.0.0.1:2375", true},
		{"localhost:2375", true},
		{"tcp://0.0.0.0:2375", false},
		{"0.0.0.0:2375", false},
		{" tcp://0.0.0.0:2375", false},
		{"TCP://10.1.2.3:2375", false},
		{"ssh://0.0.0.0:22", false},
		{":2375", false},
	} {
		cfg := map[string]json.RawMessage{"hosts": json.RawMessage(`[` + strconv.Quote(c.host) + `]`)}
		err := daemonsetup.CheckListeners(cfg)
		if (err == nil) != c.ok {
			t.Errorf("hosts [%q]: %v, want ok=%v", c.host, err, c.ok)
		}
	}
}
