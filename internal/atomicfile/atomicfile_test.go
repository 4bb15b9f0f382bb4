package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFileModeAndSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.json")
	link := filepath.Join(dir, "link.json")
	os.WriteFile(target, []byte("old"), 0o644)
	os.Symlink(target, link)
	if err := WriteFile(link, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("symlink replaced by a file")
	}
	data, _ := os.ReadFile(target)
	fi, _ := os.Stat(target)
	if string(data) != "new" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%q %v", data, fi.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("temp files left: %v", entries)
	}
}

func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	before, _ := os.Stat(dir)
	if err := CheckWritable(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(dir); !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("checking an existing dir changed it")
	}
	fresh := filepath.Join(dir, "a", "b")
	if err := CheckWritable(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o700 {
		t.Fatalf("leaf mode %v", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(dir, "a")); fi.Mode().Perm() != 0o755 {
		t.Fatalf("parent mode %v", fi.Mode())
	}
	ro := t.TempDir()
	if err := syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_RDONLY, ""); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("read-only case needs root to mount: %v", err)
		}
		t.Fatal(err)
	}
	defer syscall.Unmount(ro, 0)
	if err := CheckWritable(ro, 0o700); err == nil {
		t.Fatal("read-only filesystem reported writable")
	}
}
