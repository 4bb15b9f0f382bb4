package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/pki"
)

func newRevokeCommand(e *env) *cli.Command {
	names := make([]string, len(pki.Reasons))
	for i, r := range pki.Reasons {
		names[i] = r.Name
	}
	return &cli.Command{
		Name:      "revoke",
		Usage:     "revoke certificates by serial or by name, and regenerate the CRL",
		UsageText: "dockca revoke [--reason " + strings.Join(names, "|") + "] SERIAL|NAME...",
		Description: serialOrNameHelp + "\n\nA NAME revokes every unexpired certificate of that name, each listed. Every argument is resolved\n" +
			"before anything is revoked, so one unknown or ambiguous argument revokes nothing. Revoking a revoked\n" +
			"certificate is not an error.\n\n" +
			"dockerd itself never checks revocation: run 'dockca authz' on the daemon to enforce it.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "reason", Value: "unspecified", Usage: "RFC 5280 `REASON`: " + strings.Join(names, ", ")},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() == 0 {
				return usagef("revoke: missing SERIAL or NAME")
			}
			reason, err := pki.ParseReason(c.String("reason"))
			if err != nil {
				return usagef("revoke: %v", err)
			}
			return withAdmin(c, e, true, func(adm admin.Admin) error {
				// Every argument is resolved before the password is asked
				// for, so an unknown one revokes nothing.
				results, err := adm.Revoke(c.Context, c.Args().Slice(), reason)
				for _, r := range results {
					printRevoked(c.App.Writer, r)
				}
				if err != nil {
					return fmt.Errorf("revoke: %w", err)
				}
				return nil
			})
		},
	}
}

// printRevoked says what one revocation did, the same whether it was done
// here or by the service.
func printRevoked(w io.Writer, r api.RevokeResponse) {
	if r.Already {
		fmt.Fprintf(w, "already revoked  %s  %s %s (at %s, %s)\n", r.Serial, r.Kind, r.Name, r.RevokedAt.UTC().Format(time.RFC3339), r.Reason)
		return
	}
	fmt.Fprintf(w, "revoked          %s  %s %s (%s)\n", r.Serial, r.Kind, r.Name, r.Reason)
}

func newCRLCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "crl",
		Usage:     "print the current certificate revocation list",
		UsageText: "dockca crl [--pem | --der] [--out FILE]",
		Description: "The CRL is signed by the intermediate, has an increasing CRL number and a nextUpdate one day\n" +
			"after it was made. A stored CRL that is still fresh is printed without the CA password; otherwise\n" +
			"a new one is generated (which needs the password). DER by default, but PEM on a terminal, where\n" +
			"binary would garble it (--der forces DER).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "pem", Usage: "print PEM instead of DER"},
			&cli.BoolFlag{Name: "der", Usage: "print DER even to a terminal"},
			&cli.StringFlag{Name: "out", Usage: "write to `FILE` instead of standard output"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			if c.Bool("pem") && c.Bool("der") {
				return usagef("crl: --pem and --der cannot be combined")
			}
			out := c.String("out")
			toStdout := out == "" || out == "-"
			asPEM := c.Bool("pem") || (toStdout && !c.Bool("der") && isTerminal(c.App.Writer))
			var der []byte
			err := withAdmin(c, e, true, func(adm admin.Admin) error {
				var err error
				der, err = adm.CRL(c.Context)
				return err
			})
			if err != nil {
				return fmt.Errorf("crl: %w", err)
			}
			data := der
			if asPEM {
				data = pki.PEMCRL(der)
			}
			if !toStdout {
				return atomicfile.WriteFile(out, data, 0o644)
			}
			_, err = c.App.Writer.Write(data)
			return err
		},
	}
}

// isTerminal reports whether w is a terminal (binary output would garble
// it).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newBackupCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "backup",
		Usage:     "write a consistent copy of the database to FILE",
		UsageText: "dockca backup FILE",
		Description: "Copies dockca.db in one read transaction while other readers continue; while 'dockca serve' runs,\n" +
			"the service streams the copy over its admin socket. A home directory holding\n" +
			"the copy as dockca.db is a working dockca home. The copy holds the encrypted CA keys: keep it safe.\n" +
			"Refuses to overwrite an existing FILE.",
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 1, "FILE"); err != nil {
				return err
			}
			out := c.Args().First()
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("backup: %s already exists", out)
			}
			return withAdmin(c, e, false, func(adm admin.Admin) error { return runBackup(c.Context, adm, out, c.App.Writer) })
		},
	}
}

// runBackup writes the copy next to out and renames it into place once
// complete, so a failed or interrupted backup leaves no partial file.
func runBackup(ctx context.Context, adm admin.Admin, out string, w io.Writer) error {
	var n int64
	err := atomicfile.Create(out, 0o600, func(w io.Writer) error {
		var err error
		n, err = adm.Backup(ctx, w)
		return err
	})
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(w, "Wrote %d bytes to %s\n", n, out)
	return nil
}
