package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/serve"
	"github.com/dockca/dockca/store"
)

func newRevokeCommand(e *env) *cli.Command {
	names := make([]string, len(ca.Reasons))
	for i, r := range ca.Reasons {
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
			reason, err := ca.ParseReason(c.String("reason"))
			if err != nil {
				return usagef("revoke: %v", err)
			}
			st, err := openStore(c, e, false)
			if errors.Is(err, store.ErrLocked) {
				return revokeViaService(c, e, err, reason) // dockca serve holds the database
			}
			if err != nil {
				return err
			}
			defer st.Close()
			// Resolve first: an unknown argument fails before the password
			// is asked for, and nothing is revoked.
			if _, err := st.ResolveAll(c.Context, c.Args().Slice(), true, time.Now()); err != nil {
				return fmt.Errorf("revoke: %w", err)
			}
			a, err := unlock(c.Context, c, e, st, true)
			if err != nil {
				return err
			}
			defer a.Close()
			results, err := a.RevokeTargets(c.Context, c.Args().Slice(), reason)
			for _, r := range results {
				printRevoked(c.App.Writer, serve.RevokeResponse(r))
			}
			// Its errors say "revoke SERIAL: …" already.
			return err
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
			st, err := openStore(c, e, false)
			if err != nil {
				return err
			}
			defer st.Close()
			crl, err := ca.CurrentCRL(c.Context, st, time.Now())
			if err != nil {
				return fmt.Errorf("crl: %w", err)
			}
			if crl == nil {
				a, err := unlock(c.Context, c, e, st, true)
				if err != nil {
					return err
				}
				// Opening with CRL support generates a fresh one.
				a.Close()
				if crl, err = st.CRL(c.Context); err != nil {
					return fmt.Errorf("crl: %w", err)
				}
			}
			data := crl.DER
			if asPEM {
				data = ca.PEMCRL(crl.DER)
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
		Description: "Copies dockca.db in one read transaction while other readers continue. A home directory holding\n" +
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
			st, err := openStore(c, e, true)
			if err != nil {
				return err
			}
			defer st.Close()
			return runBackup(c.Context, st, out, c.App.Writer)
		},
	}
}

func runBackup(ctx context.Context, st *store.Store, out string, w io.Writer) error {
	var n int64
	err := atomicfile.Create(out, 0o600, func(w io.Writer) error {
		var err error
		n, err = st.Backup(ctx, w)
		return err
	})
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(w, "Wrote %d bytes to %s\n", n, out)
	return nil
}
