package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

type initOptions struct {
	name            string
	keyType         pki.KeyType
	rootTTL         string
	intermediateTTL string
	noPassword      bool
}

func newInitCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create the certificate authority: a root and an intermediate that signs every certificate",
		UsageText: "dockca init [--name NAME] [--key-type ec-p256|ec-p384|rsa-3072|ed25519] [--root-ttl D] [--intermediate-ttl D] [--no-password]",
		Description: "Creates the root CA and the intermediate CA in --home and prints the root's SHA-256 fingerprint.\n" +
			"Both private keys are stored in dockca.db encrypted (PKCS#8) under the CA password, read from\n" +
			"--password-file / DOCKCA_PASSWORD_FILE, DOCKCA_PASSWORD, or asked twice on a terminal.\n" +
			"Refuses a home that already has a CA. Durations: 30d, 12h, 90m.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Value: ca.DefaultName, Usage: "the CA's `NAME`, used in its certificates' subjects"},
			&cli.StringFlag{Name: "key-type", Value: string(pki.KeyECP256), Usage: "key `TYPE` of the root and intermediate: ec-p256, ec-p384, rsa-3072 or ed25519"},
			&cli.StringFlag{Name: "root-ttl", Value: "3650d", Usage: "lifetime `D` of the root certificate"},
			&cli.StringFlag{Name: "intermediate-ttl", Value: "1825d", Usage: "lifetime `D` of the intermediate certificate"},
			&cli.BoolFlag{Name: "no-password", Usage: "store the CA keys UNENCRYPTED (development only)"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			kt, err := pki.ParseKeyType(c.String("key-type"))
			if err != nil {
				return usagef("init: %v", err)
			}
			o := initOptions{name: c.String("name"), keyType: kt, rootTTL: c.String("root-ttl"),
				intermediateTTL: c.String("intermediate-ttl"), noPassword: c.Bool("no-password")}
			return runInit(c, e, o)
		},
	}
}

func runInit(c *cli.Context, e *env, o initOptions) error {
	rootTTL, err := pki.ParseTTL(o.rootTTL)
	if err != nil {
		return usagef("init: --root-ttl: %v", err)
	}
	interTTL, err := pki.ParseTTL(o.intermediateTTL)
	if err != nil {
		return usagef("init: --intermediate-ttl: %v", err)
	}
	home, cfg, err := homeAndStore(c, e)
	if err != nil {
		return err
	}
	rec, _, err := initHome(c, e, home, cfg, ca.InitOptions{Name: o.name, KeyType: o.keyType, RootTTL: rootTTL, IntermediateTTL: interTTL}, o.noPassword)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "Root fingerprint (SHA-256): %s\n", rec.RootFingerprint)
	return nil
}

// initHome creates the CA in home for init and for serve's first start:
// the password (asked twice, at least minPasswordLen characters) unless
// noPassword, the home directory 0700, and the database holding exactly
// the new CA, or no database at all when anything fails. It returns the
// password so serve need not ask again.
func initHome(c *cli.Context, e *env, home string, cfg store.Config, o ca.InitOptions, noPassword bool) (*store.CA, []byte, error) {
	path := store.Path(home)
	if cfg.IsEtcd() {
		path = cfg.URL
		if ok, err := cfg.Exists(c.Context); err != nil {
			return nil, nil, err
		} else if ok {
			return nil, nil, caExistsError{path}
		}
	} else if store.Exists(home) {
		return nil, nil, fmt.Errorf("%s already holds a dockca database; refusing to replace it", path)
	}
	if !noPassword {
		pw, err := readPassword(c, e, true)
		if err != nil {
			return nil, nil, fmt.Errorf("%w (or --no-password for a development CA)", err)
		}
		if len(pw) < minPasswordLen {
			return nil, nil, fmt.Errorf("the CA password must be at least %d characters", minPasswordLen)
		}
		o.Password = pw
	}
	if err := atomicfile.MkdirPrivate(home); err != nil {
		return nil, nil, err
	}
	rec, err := createDatabase(c.Context, home, cfg, o)
	if err != nil {
		return nil, nil, err
	}
	if noPassword {
		fmt.Fprintf(e.Stderr, "WARNING: the CA keys are stored UNENCRYPTED in %s.\n"+
			"Anyone who can read that file can issue certificates that are root on your Docker hosts.\n"+
			"Use --no-password for development only.\n", path)
	}
	where := home
	if cfg.IsEtcd() {
		where = cfg.URL
	}
	fmt.Fprintf(c.App.Writer, "Initialised certificate authority %q in %s\n", rec.Name, where)
	return rec, o.Password, nil
}

// createDatabase builds the new CA's database under a temporary name in
// home and links it into place only once it is complete and synced, so an
// init killed at any instant leaves either no dockca.db (and a rerun works)
// or a whole one. Link, unlike rename, never replaces a database that
// appeared meanwhile.
//
// On etcd the CA is built the same way and then copied into the store,
// whose copy marks the prefix first and writes the schema marker last:
// a killed init leaves an interrupted copy that the rerun replaces, and
// of two replicas initialising one empty prefix at once exactly one
// succeeds (the other gets ErrNotEmpty and uses the CA that won).
func createDatabase(ctx context.Context, home string, cfg store.Config, o ca.InitOptions) (*store.CA, error) {
	path := store.Path(home)
	removeStaleInits(home)
	f, err := os.CreateTemp(home, store.FileName+".init-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	f.Close()
	os.Remove(tmp) // bbolt creates it afresh: an empty file is refused
	defer os.Remove(tmp)
	st, err := store.Open(tmp, nil)
	if err != nil {
		return nil, err
	}
	rec, err := ca.Init(ctx, st, o)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if cfg.IsEtcd() {
		return rec, copyInto(ctx, tmp, cfg)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%s appeared while the CA was being created; refusing to replace it", path)
		}
		return nil, err
	}
	if err := atomicfile.SyncDir(home); err != nil {
		return nil, err
	}
	return rec, nil
}

// copyInto copies the bbolt store at path into the store cfg names.
func copyInto(ctx context.Context, path string, cfg store.Config) error {
	src, err := store.Open(path, &store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := store.OpenForCopy(ctx, cfg)
	if err != nil {
		return err
	}
	defer dst.Close()
	_, err = src.CopyTo(ctx, dst)
	return err
}

// removeStaleInits deletes what killed inits left: temporary databases no
// process holds open.
func removeStaleInits(home string) {
	stale, _ := filepath.Glob(filepath.Join(home, store.FileName+".init-*"))
	for _, p := range stale {
		st, err := store.Open(p, &store.Options{ReadOnly: true, LockTimeout: 10 * time.Millisecond})
		if errors.Is(err, store.ErrLocked) {
			continue // another init is building it
		}
		if err == nil {
			st.Close()
		}
		os.Remove(p)
	}
}

// caExistsError refuses to initialise a store that holds a CA; it matches
// store.ErrCAExists (serve's first start on etcd then uses that CA).
type caExistsError struct{ where string }

func (e caExistsError) Error() string {
	return e.where + " already holds a dockca CA; refusing to replace it"
}

func (e caExistsError) Unwrap() error { return store.ErrCAExists }
