package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/store"
)

const minPasswordLen = 8

// readPassword returns the CA password from --password-file /
// DOCKCA_PASSWORD_FILE, DOCKCA_PASSWORD, or a prompt on a terminal (asked
// twice when confirm is set). It never falls back silently: without a
// source and without a terminal it fails.
func readPassword(c *cli.Context, e *env, confirm bool) ([]byte, error) {
	if f := c.String("password-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read password file: %w", err)
		}
		pw := bytes.TrimRight(b, "\r\n")
		if len(pw) == 0 {
			return nil, fmt.Errorf("password file %s is empty", f)
		}
		return pw, nil
	}
	if pw := e.Getenv("DOCKCA_PASSWORD"); pw != "" {
		return []byte(pw), nil
	}
	if !e.IsTerminal() {
		return nil, errors.New("no CA password: set --password-file, DOCKCA_PASSWORD_FILE or DOCKCA_PASSWORD, or run in a terminal")
	}
	pw, err := e.ReadPassword("CA password: ")
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if confirm {
		again, err := e.ReadPassword("Repeat the CA password: ")
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the two passwords do not match")
		}
	}
	if len(pw) == 0 {
		return nil, errors.New("the CA password is empty")
	}
	return pw, nil
}

// openStore opens the existing database of the home; it never creates
// one (only init does), so a machine that only holds contexts never grows
// a dockca.db.
func openStore(c *cli.Context, e *env, readOnly bool) (*store.Store, error) {
	home, err := homeDir(c, e)
	if err != nil {
		return nil, err
	}
	if !store.Exists(home) {
		return nil, fmt.Errorf("no certificate authority in %s (run 'dockca init', or set --home / DOCKCA_HOME)", home)
	}
	st, err := store.Open(store.Path(home), &store.Options{ReadOnly: readOnly})
	if errors.Is(err, store.ErrLocked) {
		if _, serr := os.Stat(filepath.Join(home, api.SocketName)); serr == nil {
			// Callers that can go through the service check for ErrLocked;
			// the others should say what to do instead.
			return nil, fmt.Errorf("%w; dockca serve is running for %s: mint a token with 'dockca token create' and enroll with it, or stop the service first", err, home)
		}
	}
	return st, err
}

// unlock opens the authority of an open store, asking for the password
// only when the keys are encrypted.
func unlock(ctx context.Context, c *cli.Context, e *env, st *store.Store, withCRL bool) (*ca.Authority, error) {
	rec, err := st.CA(ctx)
	if err != nil {
		return nil, err
	}
	var pw []byte
	if rec.Encrypted {
		if pw, err = readPassword(c, e, false); err != nil {
			return nil, err
		}
	}
	return ca.Open(ctx, st, ca.OpenOptions{Password: pw, Actor: actor(), CRL: withCRL})
}

// actor names who is issuing, for the record: the OS user and host.
func actor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "cli:" + name + "@" + host
}

// removeEmptyStore deletes a database file that init created but could not
// fill, so a failed init leaves the home as it found it.
func removeEmptyStore(path string) {
	st, err := store.Open(path, &store.Options{ReadOnly: true})
	if err != nil {
		return
	}
	_, caErr := st.CA(context.Background())
	st.Close()
	if errors.Is(caErr, store.ErrNoCA) {
		os.Remove(path)
	}
}
