package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/store"
)

func newListCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list issued certificates",
		UsageText: "dockca ls [--kind client|daemon|service] [--status valid|revoked|expired] [--expiring-within D] [--json]",
		Description: "Prints a table (name, kind, role, serial, not-after, status), oldest first; --json prints an\n" +
			"array of objects with serial, name, kind, role, not_after, status and more.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "kind", Usage: "only certificates of `KIND` client, daemon or service (dockca serve's own)"},
			&cli.StringFlag{Name: "status", Usage: "only certificates whose `STATUS` is valid, revoked or expired"},
			&cli.StringFlag{Name: "expiring-within", Usage: "only valid certificates expiring within `D` (e.g. 7d)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			var f store.Filter
			if c.IsSet("kind") {
				// The service's own certificate is listed with kind
				// service, so ls filters by it too.
				k := store.Kind(c.String("kind"))
				if k != store.KindService {
					var err error
					if k, err = ca.ParseKind(c.String("kind")); err != nil {
						return usagef("ls: unknown kind %q (use client, daemon or service)", c.String("kind"))
					}
				}
				f.Kind = k
			}
			if c.IsSet("status") {
				switch s := store.Status(c.String("status")); s {
				case store.StatusValid, store.StatusRevoked, store.StatusExpired:
					f.Status = s
				default:
					return usagef("ls: unknown status %q (use valid, revoked or expired)", c.String("status"))
				}
			}
			if c.IsSet("expiring-within") {
				d, err := ca.ParseTTL(c.String("expiring-within"))
				if err != nil || d <= 0 {
					return usagef("ls: --expiring-within: %q is not a positive duration", c.String("expiring-within"))
				}
				f.ExpiringWithin = d
			}
			entries, err := certificates(c, e, api.AdminCertificatesRequest{
				Kind: string(f.Kind), Status: string(f.Status), ExpiringWithin: int64(f.ExpiringWithin / time.Second)})
			if err != nil {
				return err
			}
			return ca.WriteList(c.App.Writer, entries, c.Bool("json"))
		},
	}
}

func newShowCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show one certificate (by serial) or every certificate of a name",
		UsageText: "dockca show [--json] [--pem] SERIAL|NAME",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON (with --pem, the PEM is included)"},
			&cli.BoolFlag{Name: "pem", Usage: "print the certificate as PEM"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 1, "SERIAL or NAME"); err != nil {
				return err
			}
			entries, err := certificates(c, e, api.AdminCertificatesRequest{Arg: c.Args().First(), PEM: c.Bool("pem")})
			if err != nil {
				return err
			}
			for i, entry := range entries {
				if i > 0 && !c.Bool("pem") && !c.Bool("json") {
					fmt.Fprintln(c.App.Writer)
				}
				if err := ca.WriteShow(c.App.Writer, entry, c.Bool("json"), c.Bool("pem")); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// certificates answers ls (the filters of req) and show (req.Arg) from
// the CA of the home: the database read-only, or the running service.
func certificates(c *cli.Context, e *env, req api.AdminCertificatesRequest) ([]ca.ListEntry, error) {
	adm, err := openAdmin(c, e, false)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	return adm.Certificates(c.Context, req)
}
