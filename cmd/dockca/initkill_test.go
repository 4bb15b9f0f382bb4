package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/store"
)

// TestInitKilledAtAnyInstant kills `dockca init` (SIGKILL) at instants
// spread over its whole run. Afterwards the home holds either no database,
// and a rerun of init works, or a complete one that every command reads
// and init refuses to replace; never a half-made one (before, a kill in
// the first ~70 ms left a dockca.db without a CA that init refused).
func TestInitKilledAtAnyInstant(t *testing.T) {
	bin := buildDockca(t)
	env := func(home string) []string {
		return append(os.Environ(), "DOCKCA_HOME="+home, "DOCKCA_PASSWORD=kill-test-password")
	}
	// How long an init takes here: the kills are spread over it.
	home := filepath.Join(t.TempDir(), "h")
	start := time.Now()
	cmd := exec.Command(bin, "init")
	cmd.Env = env(home)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	full := time.Since(start)
	const steps = 16
	complete, absent := 0, 0
	for i := 0; i < steps; i++ {
		home := filepath.Join(t.TempDir(), "h")
		cmd := exec.Command(bin, "init")
		cmd.Env = env(home)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(full * time.Duration(i) / steps)
		cmd.Process.Kill()
		cmd.Wait()

		run := func(args ...string) (string, error) {
			c := exec.Command(bin, args...)
			c.Env = env(home)
			out, err := c.CombinedOutput()
			return string(out), err
		}
		if store.Exists(home) {
			complete++
			if out, err := run("ls"); err != nil {
				t.Fatalf("kill after %v left a database that ls cannot read: %v\n%s", full*time.Duration(i)/steps, err, out)
			}
			if out, err := run("init"); err == nil || !strings.Contains(out, "already holds") {
				t.Fatalf("init over a complete database: %v\n%s", err, out)
			}
		} else {
			absent++
			if out, err := run("init"); err != nil {
				t.Fatalf("rerun after a kill at %v: %v\n%s", full*time.Duration(i)/steps, err, out)
			}
			if out, err := run("ls"); err != nil {
				t.Fatalf("ls after the rerun: %v\n%s", err, out)
			}
			// The rerun removed what the killed run left.
			if left, _ := filepath.Glob(filepath.Join(home, "*.init-*")); len(left) > 0 {
				t.Fatalf("leftovers after the rerun: %v", left)
			}
		}
	}
	t.Logf("init takes %v; %d kills left no database, %d a complete one", full, absent, complete)
}
