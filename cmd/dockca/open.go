package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/user"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
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

// openAdmin returns the CA of the home for an admin command: the running
// service's admin socket when there is one, else the database itself
// (writable for commands that change it; it is never created here, only
// init does that). The password is asked for only when a key must be
// unlocked here.
func openAdmin(c *cli.Context, e *env, writable bool) (admin.Admin, error) {
	home, cfg, err := homeAndStore(c, e)
	if err != nil {
		return nil, err
	}
	return admin.Open(c.Context, home, admin.OpenOptions{
		Store:    cfg,
		Writable: writable,
		Password: func() ([]byte, error) { return readPassword(c, e, false) },
		Actor:    actor(),
	})
}

// withAdmin runs fn with the CA of the home and closes it afterwards.
func withAdmin(c *cli.Context, e *env, writable bool, fn func(admin.Admin) error) error {
	adm, err := openAdmin(c, e, writable)
	if err != nil {
		return err
	}
	defer adm.Close()
	return fn(adm)
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
