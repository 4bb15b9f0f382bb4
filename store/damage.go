package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"runtime/debug"
)

// DamagedError says that the database file cannot be trusted: it is
// empty, truncated, not a bbolt file, not a dockca database, or bbolt
// found a damaged page. It matches ErrCorrupt. Nothing is written to a
// damaged file; the way out is a backup.
type DamagedError struct {
	Path   string
	Detail string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%s is damaged: %s; restore it from a backup", e.Path, e.Detail)
}

// Is makes a DamagedError match ErrCorrupt.
func (e *DamagedError) Is(target error) bool { return target == ErrCorrupt }

func damaged(path, format string, args ...any) error {
	return &DamagedError{Path: path, Detail: fmt.Sprintf(format, args...)}
}

// bbolt's on-disk meta page (go.etcd.io/bbolt/internal/common): a 16-byte
// page header, then magic, version, page size, flags, the root bucket
// (root page, sequence), freelist page, high-water page id, txid and an
// FNV-64a checksum of everything before it.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16
	metaSize       = 64
)

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

func readMeta(b []byte) (boltMeta, bool) {
	if len(b) < metaSize {
		return boltMeta{}, false
	}
	le := binary.LittleEndian
	m := boltMeta{pageSize: le.Uint32(b[8:]), root: le.Uint64(b[16:]), freelist: le.Uint64(b[32:]),
		pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}
	h := fnv.New64a()
	h.Write(b[:56])
	if le.Uint32(b[0:]) != boltMagic || le.Uint32(b[4:]) != boltVersion || h.Sum64() != le.Uint64(b[56:]) {
		return boltMeta{}, false
	}
	return m, true
}

// precheckFile refuses, before bbolt maps it, a file that would make bbolt
// fault or panic: an empty file (bbolt would silently make a new database
// of it), a file without a valid meta page, and a file shorter than its
// meta page says (a truncated copy: bbolt would read past the end of the
// mapping and crash with SIGBUS). A missing file is fine: bbolt creates it.
//
// The check reads without bbolt's file lock, so a writer may commit while
// it reads: a finding is only reported when the newest meta page is the
// same after it, else the check is made again.
func precheckFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	for attempt := 0; ; attempt++ {
		m, err := precheckOnce(f, path)
		if err == nil || attempt == 4 {
			return err
		}
		if again, _, _ := newestMeta(f); again == m {
			return err
		}
	}
}

// newestMeta reads both meta pages and returns the valid one with the
// higher transaction id; ok is false when neither is valid.
func newestMeta(f *os.File) (m boltMeta, ok bool, err error) {
	head := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(head, 0); err != nil {
		return boltMeta{}, false, err
	}
	m0, ok0 := readMeta(head[pageHeaderSize:])
	var m1 boltMeta
	var ok1 bool
	ps := int64(m0.pageSize)
	if !ok0 {
		ps = int64(os.Getpagesize())
	}
	if ps > 0 && ps <= 1<<16 {
		second := make([]byte, pageHeaderSize+metaSize)
		if _, err := f.ReadAt(second, ps); err == nil {
			m1, ok1 = readMeta(second[pageHeaderSize:])
		}
	}
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		return m1, true, nil
	case ok0:
		return m0, true, nil
	}
	return boltMeta{}, false, nil
}

func precheckOnce(f *os.File, path string) (boltMeta, error) {
	// The meta page first, then the size: the file only grows, and it
	// grows before a meta page points into the new part.
	m, ok, rerr := newestMeta(f)
	fi, err := f.Stat()
	if err != nil {
		return m, err
	}
	switch {
	case fi.Size() == 0:
		return m, damaged(path, "the file is empty")
	case rerr != nil:
		return m, damaged(path, "the file is %d bytes long, too short for a database", fi.Size())
	case !ok:
		return m, damaged(path, "it is not a bbolt database (no valid meta page)")
	}
	if m.pageSize < 512 || m.pageSize > 1<<16 {
		return m, damaged(path, "its page size %d is invalid", m.pageSize)
	}
	if need := int64(m.pgid) * int64(m.pageSize); fi.Size() < need {
		return m, damaged(path, "the file is %d bytes long but its pages reach %d bytes (truncated)", fi.Size(), need)
	}
	if m.root >= m.pgid || (m.freelist >= m.pgid && m.freelist != ^uint64(0)) {
		return m, damaged(path, "its meta page points past the end of the file")
	}
	// bbolt panics while opening when the freelist page is not one, and
	// the panic leaks its file lock: check the two pages it reads first.
	if m.freelist != ^uint64(0) {
		if err := checkPageFlags(f, m, m.freelist, freelistPageFlag); err != nil {
			return m, damaged(path, "its freelist page %d %v", m.freelist, err)
		}
	}
	if err := checkPageFlags(f, m, m.root, branchPageFlag, leafPageFlag); err != nil {
		return m, damaged(path, "its root page %d %v", m.root, err)
	}
	return m, nil
}

// bbolt's page types.
const (
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
)

func checkPageFlags(f *os.File, m boltMeta, id uint64, want ...uint16) error {
	hdr := make([]byte, pageHeaderSize)
	if _, err := f.ReadAt(hdr, int64(id)*int64(m.pageSize)); err != nil {
		return fmt.Errorf("cannot be read (%v)", err)
	}
	le := binary.LittleEndian
	if le.Uint64(hdr[0:]) != id {
		return fmt.Errorf("carries id %d", le.Uint64(hdr[0:]))
	}
	flags := le.Uint16(hdr[8:])
	for _, w := range want {
		if flags == w {
			return nil
		}
	}
	return fmt.Errorf("has the wrong page type %#x", flags)
}

// guard turns a bbolt panic, or a fault while reading the memory map, in
// the calling goroutine into a DamagedError: bbolt panics on some kinds of
// page corruption, and a command must say so, not crash.
func guard(path string, err *error) {
	if r := recover(); r != nil {
		*err = damaged(path, "bbolt failed on a damaged page (%v)", r)
	}
}

// faultsPanic makes a fault on the memory map (SIGBUS on a file truncated
// while open) a recoverable panic in this goroutine; call the returned
// function to restore the previous setting.
func faultsPanic() func() {
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}
