package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/store"
)

type initOptions struct {
	name            string
	keyType         ca.KeyType
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
			&cli.StringFlag{Name: "key-type", Value: string(ca.KeyECP256), Usage: "key `TYPE` of the root and intermediate: ec-p256, ec-p384, rsa-3072 or ed25519"},
			&cli.StringFlag{Name: "root-ttl", Value: "3650d", Usage: "lifetime `D` of the root certificate"},
			&cli.StringFlag{Name: "intermediate-ttl", Value: "1825d", Usage: "lifetime `D` of the intermediate certificate"},
			&cli.BoolFlag{Name: "no-password", Usage: "store the CA keys UNENCRYPTED (development only)"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			kt, err := ca.ParseKeyType(c.String("key-type"))
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
	rootTTL, err := ca.ParseTTL(o.rootTTL)
	if err != nil {
		return usagef("init: --root-ttl: %v", err)
	}
	interTTL, err := ca.ParseTTL(o.intermediateTTL)
	if err != nil {
		return usagef("init: --intermediate-ttl: %v", err)
	}
	home, err := homeDir(c, e)
	if err != nil {
		return err
	}
	if store.Exists(home) {
		return fmt.Errorf("init: %s already holds a dockca database; refusing to replace it", store.Path(home))
	}
	var pw []byte
	if !o.noPassword {
		if pw, err = readPassword(c, e, true); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		if len(pw) < minPasswordLen {
			return fmt.Errorf("init: the CA password must be at least %d characters", minPasswordLen)
		}
	}
	if err := atomicfile.PrivateDir(home); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	path := store.Path(home)
	st, err := store.Open(path, nil)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	rec, err := ca.Init(c.Context, st, ca.InitOptions{Name: o.name, KeyType: o.keyType, RootTTL: rootTTL, IntermediateTTL: interTTL, Password: pw})
	closeErr := st.Close()
	if err != nil {
		if !errors.Is(err, store.ErrCAExists) {
			removeEmptyStore(path)
		}
		return err
	}
	if closeErr != nil {
		return fmt.Errorf("init: %w", closeErr)
	}
	if o.noPassword {
		fmt.Fprintf(e.Stderr, "WARNING: the CA keys are stored UNENCRYPTED in %s.\n"+
			"Anyone who can read that file can issue certificates that are root on your Docker hosts.\n"+
			"Use --no-password for development only.\n", path)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "Initialised certificate authority %q in %s\n", rec.Name, home)
	fmt.Fprintf(w, "Root fingerprint (SHA-256): %s\n", rec.RootFingerprint)
	return nil
}
