package daemonsetup_test

import (
	"os"
	"path/filepath"
	"testing"
)

// snapshot is every file under dir with its content and mode, to show that
// a refused or repeated run wrote nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		data := ""
		if !fi.IsDir() {
			b, _ := os.ReadFile(p)
			data = string(b)
		}
		files[p] = fi.Mode().String() + " " + fi.ModTime().String() + " " + data
		return nil
	})
	return files
}

func equalSnapshots(t *testing.T, a, b map[string]string) {
	t.Helper()
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%s changed:\n%s\n->\n%s", k, v, b[k])
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("%s appeared", k)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
