// Package atomicfile writes files so that a reader, or a crash, sees either
// the old content or the new, never a torn file: each file is written to a
// temporary name in its directory, synced, renamed over the target and the
// directory synced. Sets of files are staged completely before the first
// rename, so bad input or a full disk leaves nothing behind.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrExists is returned when a target exists and overwriting was not asked
// for.
var ErrExists = errors.New("file already exists")

// File is one file to write.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// Write writes one file atomically.
func Write(path string, data []byte, mode fs.FileMode) error {
	return WriteAll([]File{{Path: path, Data: data, Mode: mode}}, true)
}

// WriteAll writes files atomically each. Unless overwrite is set it first
// checks that none of the targets exists, and refuses (changing nothing)
// if one does. All content is staged and synced before the first rename.
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
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func stage(f File) (string, error) {
	dir := filepath.Dir(f.Path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.Path)+".tmp-*")
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// PrivateDir creates dir (and missing parents) with mode 0700. An existing
// directory is left as it is: it may be shared (a user's chosen --out), and
// the key files written into it are 0600 themselves.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}
