package contexts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// EnvOptions select the context Env prints variables for.
type EnvOptions struct {
	Options
	Name string
	// Dir is where the TLS files are materialised; empty means
	// <docker config>/dockca/env/NAME. Renew and Remove keep the default
	// location in step with the context; a custom Dir is the caller's.
	Dir string
}

// Env materialises a context's TLS files in a private directory (0700,
// files 0600, replaced atomically) and prints shell exports that make
// tools which ignore contexts use them.
func Env(ctx context.Context, o EnvOptions, w io.Writer) error {
	if err := env(o, w); err != nil {
		return fmt.Errorf("env for context %q: %w", o.Name, err)
	}
	return nil
}

func env(o EnvOptions, w io.Writer) error {
	st := openStore(o.Options)
	rec, err := lookupOwned(st, o.Name)
	if err != nil {
		return err
	}
	b, err := readTLS(st, o.Name)
	if err != nil {
		return err
	}
	dir := o.Dir
	if dir == "" {
		dir = o.envDir(o.Name)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	if o.Dir != "" {
		if err := onlyTLSFiles(dir); err != nil {
			return err
		}
	}
	if err := materialise(dir, *b); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "export DOCKER_HOST=%s DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=%s\n",
		shellQuote(rec.Host), shellQuote(dir))
	return err
}

// materialise writes ca.pem, cert.pem and key.pem — the names
// DOCKER_CERT_PATH expects — into dir as one atomic replacement.
func materialise(dir string, b tlsbundle.Bundle) error {
	files := map[string][]byte{pki.FileCA: b.CA, pki.FileClientCert: b.Cert, pki.FileClientKey: b.Key}
	return replaceDir(dir, filepath.Dir(dir), filepath.Base(dir), files)
}

// onlyTLSFiles refuses a caller-chosen directory that holds anything but
// the three files materialise writes: the directory is replaced as a whole,
// and what else it held would be lost.
func onlyTLSFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		switch e.Name() {
		case pki.FileCA, pki.FileClientCert, pki.FileClientKey:
		default:
			return fmt.Errorf("%s holds %s and other files; --dir must be a new or empty directory (or one holding only ca.pem, cert.pem and key.pem), since it is replaced as a whole", dir, e.Name())
		}
	}
	return nil
}

// shellQuote quotes s for POSIX shells when it has anything but plainly
// safe characters, so `eval "$(dockca context env x)"` cannot run code from
// a crafted host or path.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
