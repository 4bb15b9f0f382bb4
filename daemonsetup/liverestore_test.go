package daemonsetup_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockca/dockca/daemonsetup"
	"github.com/dockca/dockca/internal/testca"
)

// daemon setup --live-restore keeps containers running across the
// restart each renewal needs; without it, the renewal hook warns.
func TestSetupLiveRestore(t *testing.T) {
	ctx := context.Background()
	c := testca.New(t)
	root := t.TempDir()
	o := rootOptions(root)
	writeFile(t, o.ConfigPath, `{"log-level": "warn"}`)
	if w := daemonsetup.LiveRestoreWarning(o.ConfigPath); !strings.Contains(w, "live-restore is off in "+o.ConfigPath) {
		t.Fatalf("warning before setup: %q", w)
	}
	o.LiveRestore = true
	var out bytes.Buffer
	if _, err := daemonsetup.Setup(ctx, o, c, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "live-restore") {
		t.Fatalf("setup does not say it set live-restore:\n%s", out.String())
	}
	if on, err := daemonsetup.LiveRestoreEnabled(o.ConfigPath); err != nil || !on {
		t.Fatalf("live-restore after setup --live-restore: %v %v", on, err)
	}
	if w := daemonsetup.LiveRestoreWarning(o.ConfigPath); w != "" {
		t.Fatalf("warning with live-restore on: %q", w)
	}
	raw, _ := os.ReadFile(o.ConfigPath)
	if !strings.Contains(string(raw), `"log-level": "warn"`) {
		t.Fatalf("unrelated keys lost:\n%s", raw)
	}
	// A second run changes nothing.
	if res, err := daemonsetup.Setup(ctx, o, c, &bytes.Buffer{}); err != nil || res.Changed {
		t.Fatalf("second run: %+v %v", res, err)
	}
	// A file that does not exist is dockerd's default (off); a broken one
	// cannot say.
	if on, err := daemonsetup.LiveRestoreEnabled(filepath.Join(root, "missing.json")); on || err != nil {
		t.Fatalf("missing daemon.json: %v %v", on, err)
	}
	bad := filepath.Join(root, "bad.json")
	writeFile(t, bad, `{"live-restore": "yes"}`)
	if _, err := daemonsetup.LiveRestoreEnabled(bad); err == nil {
		t.Fatal("a non-boolean live-restore was accepted")
	}
	if w := daemonsetup.LiveRestoreWarning(bad); !strings.Contains(w, "cannot tell") {
		t.Fatalf("warning for a broken file: %q", w)
	}
}
