package contexts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/pki"
)

// stagePrefix names staging directories. They live next to the context
// store's per-context TLS directories, where the docker CLI never looks
// (it only opens tls/<sha256 of a name>), so a crash that leaves one behind
// is invisible to docker and is cleared on the next write.
const stagePrefix = ".dockca-stage-"

// testHookBeforeSwap, when set by a test, runs after the new material is
// fully on disk and before it replaces the old; an error aborts there, which
// is the moment a crash would do the most damage to a naive writer.
var testHookBeforeSwap func(stage string) error

// testNoExchange makes swap take the path for filesystems without
// RENAME_EXCHANGE.
var testNoExchange bool

// tlsFiles is the docker CLI's layout of one endpoint's TLS material.
func tlsFiles(b *Material) map[string][]byte {
	return map[string][]byte{pki.FileCA: b.CA, pki.FileClientCert: b.Cert, pki.FileClientKey: b.Key}
}

// replaceDir makes target contain exactly files, all 0600, replacing any
// previous content in one step: the files are written and fsynced into a
// fresh directory under stageParent (same filesystem as target), which is
// then exchanged with target by renameat2(RENAME_EXCHANGE). tag names the
// staging directory so that stale ones of the same target can be found. A reader — or a
// crash — sees the complete old set or the complete new set.
func replaceDir(target, stageParent, tag string, files map[string][]byte) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(stageParent, 0o700); err != nil {
		return err
	}
	clearStale(stageParent, tag)
	stage, err := os.MkdirTemp(stageParent, stagePrefix+tag+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage) // after a swap it holds the old material
	for name, data := range files {
		if err := writeNew(filepath.Join(stage, name), data); err != nil {
			return err
		}
	}
	if err := atomicfile.SyncDir(stage); err != nil {
		return err
	}
	if testHookBeforeSwap != nil {
		if err := testHookBeforeSwap(stage); err != nil {
			return err
		}
	}
	if err := swap(stage, target); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(target))
}

// swap puts stage at target. When target exists the two are exchanged
// atomically; on filesystems without RENAME_EXCHANGE the old directory is
// first moved aside, which can briefly leave no TLS directory at all (docker
// then fails to connect) but never a mismatched pair.
func swap(stage, target string) error {
	if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
		return os.Rename(stage, target)
	}
	err := error(unix.EINVAL)
	if !testNoExchange {
		err = unix.Renameat2(unix.AT_FDCWD, stage, unix.AT_FDCWD, target, unix.RENAME_EXCHANGE)
	}
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("exchange %s: %w", target, err)
	}
	aside := stage + ".old"
	if err := os.Rename(target, aside); err != nil {
		return err
	}
	if err := os.Rename(stage, target); err != nil {
		_ = os.Rename(aside, target)
		return err
	}
	// The deferred cleanup of stage removes nothing now; remove the old copy.
	return os.RemoveAll(aside)
}

// clearStale removes staging directories for tag left by a crashed run.
func clearStale(stageParent, tag string) {
	entries, err := os.ReadDir(stageParent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), stagePrefix+tag+"-") {
			_ = os.RemoveAll(filepath.Join(stageParent, e.Name()))
		}
	}
}

func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
