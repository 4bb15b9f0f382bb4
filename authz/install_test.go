package authz

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestRenderUnitGolden(t *testing.T) {
	text, err := RenderUnit(UnitOptions{
		Exec:          "/usr/local/bin/dockca",
		Args:          []string{"authz", "--home", "/var/lib/dockca", "--audit-log", "/var/log/dockca/audit log.jsonl", "--policy", "/etc/dockca/50%.yaml"},
		WritablePaths: []string{"/var/lib/dockca", "/var/log/dockca"},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "dockca-authz.service.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if text != string(want) {
		t.Fatalf("unit differs from %s (go test -run RenderUnitGolden -update):\n%s", golden, text)
	}
	for _, line := range []string{"Before=docker.service", "WantedBy=multi-user.target", "ReadWritePaths=-/run/docker/plugins -/var/lib/dockca -/var/log/dockca",
		`"/var/log/dockca/audit log.jsonl"`, "/etc/dockca/50%%.yaml"} {
		if !strings.Contains(text, line) {
			t.Errorf("unit lacks %q", line)
		}
	}
	if _, err := RenderUnit(UnitOptions{Exec: "dockca"}); err == nil {
		t.Error("relative executable accepted")
	}
}

func TestWriteUnitIsIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "systemd")
	text, err := RenderUnit(UnitOptions{Exec: "/usr/bin/dockca", Args: []string{"authz", "--home", "/var/lib/dockca"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []WriteResult{Created, Unchanged} {
		name, res, err := WriteUnit(dir, text)
		if err != nil || res != want {
			t.Fatalf("write %d: %v %v, want %v", i, res, err, want)
		}
		if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != 0o644 {
			t.Fatalf("unit file mode: %v %v", fi.Mode(), err)
		}
	}
	if _, res, err := WriteUnit(dir, text+"# changed\n"); err != nil || res != Updated {
		t.Fatalf("rewrite: %v %v", res, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}
}

func TestInstallUnitReports(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	o := InstallOptions{SystemdDir: dir, Unit: UnitOptions{Exec: "/usr/bin/dockca", Args: []string{"authz", "--ca-url", "https://ca.example:8443"}}}
	for _, want := range []WriteResult{Created, Unchanged} {
		out.Reset()
		res, err := InstallUnit(context.Background(), o, &out)
		if err != nil || res != want {
			t.Fatalf("InstallUnit: %v %v, want %v", res, err, want)
		}
		if !strings.Contains(out.String(), filepath.Join(dir, UnitName)+": "+want.String()) || !strings.Contains(out.String(), "systemctl enable --now dockca-authz.service") {
			t.Fatalf("output:\n%s", out.String())
		}
	}
	if h := ReloadHint("dockca"); !strings.Contains(h, "SIGHUP") || !strings.Contains(h, "systemctl restart dockca-authz.service") {
		t.Fatal(h)
	}
}
