package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
)

func newAccessCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "access",
		Usage:     "show which client certificates can reach which daemons, with the role that applies there",
		UsageText: "dockca access [--json] [--group G] [--client NAME]",
		Description: "One row per pair of a valid client certificate and a valid daemon certificate such that the client\n" +
			"reaches the daemon: its scope includes one of the daemon's groups, or it has no scope (it reaches every\n" +
			"daemon). The role is the one that applies on that daemon: the certificate's, narrowed by the stored\n" +
			"policy's group_roles. Expires is the earlier of the two certificates' not-after; status says\n" +
			"'expiring' within 7 days. The groups are those the daemon certificate was issued with: a daemon\n" +
			"enforces the groups its plugin or gate runs with (--group), so keep the two the same.\n" +
			"--json prints an array of {client, client_serial, role, daemon, daemon_serial, groups, expires}, the\n" +
			"same as GET /v1/access on the service. Works offline and, while 'dockca serve' runs, through it.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.StringFlag{Name: "group", Usage: "only daemons in `GROUP`"},
			&cli.StringFlag{Name: "client", Usage: "only the certificates of client `NAME`"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			q := api.AccessRequest{Group: c.String("group"), Client: c.String("client")}
			if c.IsSet("group") {
				if err := pki.CheckGroupName(q.Group); err != nil {
					return usagef("access: --group: %v", err)
				}
			}
			if c.IsSet("client") {
				if err := pki.CheckClientName(q.Client); err != nil {
					return usagef("access: --client: %v", err)
				}
			}
			return withAdmin(c, e, false, func(adm admin.Admin) error {
				return runAccess(c.Context, adm, q, c.Bool("json"), c.App.Writer)
			})
		},
	}
}

// runAccess prints the access map of the CA behind adm.
func runAccess(ctx context.Context, adm admin.Admin, q api.AccessRequest, asJSON bool, w io.Writer) error {
	entries, err := adm.Access(ctx, q)
	if err != nil {
		return fmt.Errorf("access: %w", err)
	}
	return writeAccess(w, entries, asJSON, time.Now())
}

// accessExpiringWithin is when a pair shows as expiring.
const accessExpiringWithin = 7 * 24 * time.Hour

func writeAccess(w io.Writer, entries []api.AccessEntry, asJSON bool, now time.Time) error {
	if asJSON {
		if entries == nil {
			entries = []api.AccessEntry{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tCLIENT SERIAL\tROLE\tDAEMON\tDAEMON SERIAL\tGROUPS\tEXPIRES\tSTATUS")
	for _, e := range entries {
		groups, status := strings.Join(e.Groups, ","), "valid"
		if groups == "" {
			groups = "-"
		}
		if e.Expires.Sub(now) < accessExpiringWithin {
			status = "expiring"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Client, e.ClientSerial, e.Role, e.Daemon, e.DaemonSerial,
			groups, e.Expires.UTC().Format(time.RFC3339), status)
	}
	return tw.Flush()
}
