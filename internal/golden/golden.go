// Package golden compares test output with files under testdata/, so that
// what users see (tables, JSON, merged config files) is reviewed as text in
// the repository. Run the tests with -update to rewrite the files.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// Assert fails t when got differs from testdata/name.
func Assert(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (rerun with -update after checking):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}
