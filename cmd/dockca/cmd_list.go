package main

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

func newListCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list issued certificates",
		UsageText: "dockca ls [--kind client|daemon|service] [--status valid|superseded|revoked|expired] [--expiring-within D] [--json | -q | --format TEMPLATE]",
		Description: "Prints a table (name, kind, role, groups, serial, not-after, status), oldest first; GROUPS is a\n" +
			"daemon's groups or a client's scope, 'all' for a client without a scope (it reaches every daemon).\n" +
			"--json prints an array of objects with serial, name, kind, role, groups, all_groups, not_after, status\n" +
			"and more; -q prints the serials only, one a line. --format takes a Go template over each certificate's\n" +
			"fields: .Serial .Name .Kind .Role .SANs .Groups .AllGroups .NotBefore .NotAfter .Status .IssuedAt\n" +
			".IssuedBy .Holder .Fingerprint .RevokedAt .Reason\n" +
			"('{{json .}}' is one --json object a line; 'table {{.Name}}\\t{{.Serial}}' aligns columns).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "kind", Usage: "only certificates of `KIND` client, daemon or service (dockca serve's own)"},
			&cli.StringFlag{Name: "status", Usage: "only certificates whose `STATUS` is valid, superseded (renewed), revoked or expired"},
			&cli.StringFlag{Name: "expiring-within", Usage: "only valid certificates expiring within `D` (e.g. 7d)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print serials only"},
			formatFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			if err := outputMode(c); err != nil {
				return err
			}
			var f store.Filter
			if c.IsSet("kind") {
				// The service's own certificate is listed with kind
				// service, so ls filters by it too.
				k := pki.Kind(c.String("kind"))
				if k != pki.KindService {
					var err error
					if k, err = pki.ParseKind(c.String("kind")); err != nil {
						return usagef("ls: unknown kind %q (use client, daemon or service)", c.String("kind"))
					}
				}
				f.Kind = k
			}
			if c.IsSet("status") {
				switch s := store.Status(c.String("status")); s {
				case store.StatusValid, store.StatusSuperseded, store.StatusRevoked, store.StatusExpired:
					f.Status = s
				default:
					return usagef("ls: unknown status %q (use valid, superseded, revoked or expired)", c.String("status"))
				}
			}
			if c.IsSet("expiring-within") {
				d, err := pki.ParseTTL(c.String("expiring-within"))
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
			switch {
			case c.Bool("quiet"):
				for _, entry := range entries {
					fmt.Fprintln(c.App.Writer, entry.Serial)
				}
				return nil
			case c.IsSet("format"):
				return writeFormatted(c, entries, c.String("format"), func(w io.Writer) error { return ca.WriteList(w, entries, false) })
			}
			return ca.WriteList(c.App.Writer, entries, c.Bool("json"))
		},
	}
}

// serialOrNameHelp says how a SERIAL|NAME argument is resolved (see
// store.Resolve), for every command that takes one.
const serialOrNameHelp = "SERIAL|NAME is tried, in order, as a full serial (hex as openssl prints it: any case, colons and\n" +
	"leading zeros optional), as a name (every certificate issued to it: a name always wins), and as a\n" +
	"unique prefix of at least 4 hex digits of a serial as ls prints it. A prefix that several serials\n" +
	"start with is an error listing them, and nothing is done."

func newShowCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "show",
		Usage:       "show one certificate (by serial) or every certificate of a name",
		UsageText:   "dockca show [--json | --pem | --format TEMPLATE] SERIAL|NAME",
		Description: serialOrNameHelp + "\n\n--format takes a Go template over the fields ls --format has, plus .PEM.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON (with --pem, the PEM is included)"},
			&cli.BoolFlag{Name: "pem", Usage: "print the certificate as PEM"},
			formatFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 1, "SERIAL or NAME"); err != nil {
				return err
			}
			if err := outputMode(c); err != nil {
				return err
			}
			// The template may use .PEM.
			withPEM := c.Bool("pem") || c.IsSet("format")
			entries, err := certificates(c, e, api.AdminCertificatesRequest{Arg: c.Args().First(), PEM: withPEM})
			if err != nil {
				return err
			}
			if c.IsSet("format") {
				return writeFormatted(c, entries, c.String("format"), func(w io.Writer) error { return ca.WriteList(w, entries, false) })
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
