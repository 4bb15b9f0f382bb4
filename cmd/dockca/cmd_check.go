package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/store"
)

func newCheckCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "verify the database: consistency, records, certificates, CA keys, indexes",
		UsageText: "dockca check [--json]",
		Description: "Checks bbolt's page consistency, that every record decodes, that every certificate parses, matches\n" +
			"its record and chains to the CA, that the CA keys decrypt with the password and match their\n" +
			"certificates, and that the indexes (names, renewals, revocations, used tokens) agree with the records.\n" +
			"Reports every problem found; exit status 1 if there is any. While 'dockca serve' runs, the service\n" +
			"checks its database (its keys were decrypted when it started).",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"}},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			return withAdmin(c, e, false, func(adm admin.Admin) error { return runCheck(c.Context, adm, c.Bool("json"), c.App.Writer) })
		},
	}
}

// runCheck checks the database and prints the report; any problem is an
// error (exit 1) after the report.
func runCheck(ctx context.Context, adm admin.Admin, asJSON bool, w io.Writer) error {
	rep, err := adm.Check(ctx)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if err := writeCheckReport(w, rep, asJSON); err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("check: %d problems found", len(rep.Problems))
	}
	return nil
}

func writeCheckReport(w io.Writer, rep *ca.CheckReport, asJSON bool) error {
	if asJSON {
		if rep.Problems == nil {
			rep.Problems = []store.Problem{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(w, "%d certificates, %d revocations, %d tokens; CA keys %s\n", rep.Certificates, rep.Revocations, rep.Tokens, rep.Keys)
	if rep.OK() {
		fmt.Fprintln(w, "No problems found.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHERE\tPROBLEM")
	for _, p := range rep.Problems {
		fmt.Fprintf(tw, "%s\t%s\n", p.Where, p.Problem)
	}
	return tw.Flush()
}
