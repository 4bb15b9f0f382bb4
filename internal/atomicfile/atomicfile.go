// Package atomicfile writes files so that a reader, or a crash, only ever
// sees the old content or the new content, never a mix. dockca writes TLS
// keys, daemon.json and the docker CLI's config.json; a half-written one of
// these either locks an operator out of their daemon or leaks a key, so every
// write goes through a temp file in the same directory, fsync, rename and an
// fsync of the directory. Sets of files (WriteAll) are staged completely
// before the first rename, so bad input or a full disk leaves nothing behind.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// WriteFile atomically replaces path with data, created with perm. An
// existing symlink at path is followed so that a config file kept elsewhere
// (dotfile managers do this) stays a symlink.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp uses 0600; set the wanted mode before any byte lands so a
	// key is never readable by others, and a public file ends up readable.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that renames and creations in it survive a
// power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// MkdirPrivate creates dir (and parents) and makes sure dir itself is 0700:
// it holds private keys, so a pre-existing looser directory is tightened
// rather than trusted.
func MkdirPrivate(dir string) error {
	if err := mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("restrict %s: %w", dir, err)
		}
	}
	return nil
}

// CheckWritable fails when files cannot be created in dir. Callers use it
// before asking the CA for a certificate, so that a read-only or
// misconfigured target does not leave an issued certificate that was never
// stored anywhere. An existing dir is checked with access(2), which reports
// a read-only filesystem even to root, so the check itself changes nothing
// (idempotent runs must not even touch directory mtimes); a missing dir is
// created with perm (parents 0755), since a write into it is coming anyway.
func CheckWritable(dir string, perm os.FileMode) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not writable: not a directory", dir)
		}
		if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("%s is not writable: %w", dir, err)
		}
		return nil
	}
	if err := mkdir(dir, perm); err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	return nil
}

// mkdir creates dir with perm and any missing parents with 0755, so that a
// private leaf directory does not make /etc/docker private too.
func mkdir(dir string, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, perm); err != nil && !os.IsExist(err) {
		return err
	}
	return nil
}

// ErrExists is returned when a target exists and overwriting was not asked
// for.
var ErrExists = errors.New("file already exists")

// File is one file of a set written by WriteAll.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// WriteAll writes files, each atomically. Unless overwrite is set it first
// checks that none of the targets exists and refuses, changing nothing, if
// one does. All content is staged and synced before the first rename.
func WriteAll(files []File, overwrite bool) error {
	if !overwrite {
		for _, f := range files {
			if _, err := os.Lstat(f.Path); err == nil {
				return fmt.Errorf("%s: %w (use --force to replace it)", f.Path, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	temps := make([]string, 0, len(files))
	cleanup := func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}
	for _, f := range files {
		tmp, err := stage(f)
		if err != nil {
			cleanup()
			return err
		}
		temps = append(temps, tmp)
	}
	dirs := map[string]bool{}
	for i, f := range files {
		if err := os.Rename(temps[i], f.Path); err != nil {
			cleanup()
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		dirs[filepath.Dir(f.Path)] = true
	}
	for d := range dirs {
		if err := SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// Create writes the file path by streaming into fill, atomically, and
// refuses (changing nothing) when path exists. For content too large to
// hold in memory, such as a database backup.
func Create(path string, mode fs.FileMode, fill func(io.Writer) error) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: %w", path, ErrExists)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	err = func() error {
		if err := tmp.Chmod(mode); err != nil {
			return err
		}
		if err := fill(tmp); err != nil {
			return err
		}
		if err := tmp.Sync(); err != nil {
			return err
		}
		return tmp.Close()
	}()
	if err == nil {
		// Link, not rename: it fails if path appeared meanwhile, so an
		// existing file is never replaced.
		err = os.Link(name, path)
	}
	tmp.Close()
	os.Remove(name)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

func stage(f File) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), "."+filepath.Base(f.Path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", f.Path, err)
	}
	name := tmp.Name()
	fail := func(err error) (string, error) {
		tmp.Close()
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", f.Path, err)
	}
	if err := tmp.Chmod(f.Mode); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(f.Data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", f.Path, err)
	}
	return name, nil
}

// PrivateDir creates dir 0700 (missing parents 0755). Unlike MkdirPrivate
// it leaves an existing directory as it is: that may be a user's chosen,
// shared --out directory, and the key files written into it are 0600.
func PrivateDir(dir string) error {
	if err := mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}
