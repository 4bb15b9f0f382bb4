package gate

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dockca/dockca/pki"
)

// certReloader serves the gate's certificate from its files and loads them
// again when they change (renew --watch replaces them by rename). A pair
// that does not load — caught between two renames, or broken — leaves the
// previous one in service; existing connections never notice either way.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	stamp   [2]fileStamp
	current *tls.Certificate
	checked time.Time
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s, nil
}

// recheckEvery bounds how often a handshake stats the files.
const recheckEvery = time.Second

func newCertReloader(dir string) (*certReloader, error) {
	r := &certReloader{certFile: filepath.Join(dir, pki.FileServerCert), keyFile: filepath.Join(dir, pki.FileServerKey)}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	cs, err := stampOf(r.certFile)
	if err != nil {
		return fmt.Errorf("load certificate: %w", err)
	}
	ks, err := stampOf(r.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s: %w", r.certFile, err)
	}
	r.current, r.stamp = &pair, [2]fileStamp{cs, ks}
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= recheckEvery {
		r.checked = now
		cs, err1 := stampOf(r.certFile)
		ks, err2 := stampOf(r.keyFile)
		if err1 == nil && err2 == nil && [2]fileStamp{cs, ks} != r.stamp {
			_ = r.load() // on failure the previous pair keeps serving
		}
	}
	return r.current, nil
}
