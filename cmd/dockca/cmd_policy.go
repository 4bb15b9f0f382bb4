package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/store"
)

func newPolicyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "store and show the CA's authorization policy (the roles clients may carry)",
		Subcommands: []*cli.Command{
			{
				Name:      "set",
				Usage:     "validate a policy file and store it in the CA",
				UsageText: "dockca policy set FILE",
				Description: "FILE is in the format of 'dockca authz --policy' (- reads standard input). It is compiled by the\n" +
					"plugin's own compiler over the built-in roles and refused, changing nothing, when invalid. Once stored,\n" +
					"issuance (issue, sign, token create, context add) accepts its roles beside readonly, operator and admin,\n" +
					"and the service serves it at GET /v1/policy. Works while 'dockca serve' runs.",
				Action: func(c *cli.Context) error {
					if err := argsExactly(c, 1, "FILE"); err != nil {
						return err
					}
					file := c.Args().First()
					var data []byte
					var err error
					if file == "-" {
						data, err = io.ReadAll(io.LimitReader(e.Stdin, 1<<20))
					} else {
						data, err = os.ReadFile(file)
					}
					if err != nil {
						return fmt.Errorf("policy set: %w", err)
					}
					var p *store.Policy
					err = withAdmin(c, e, true, func(adm admin.Admin) error {
						p, err = adm.SetPolicy(c.Context, data, actor())
						return err
					})
					if err != nil {
						return fmt.Errorf("policy set: %q: %w", file, err)
					}
					fmt.Fprintf(c.App.Writer, "Stored the policy from %s (sha256 %s); roles: %s\n", file, p.SHA256, strings.Join(p.Roles, ", "))
					return nil
				},
			},
			{
				Name:      "show",
				Usage:     "print the stored policy",
				UsageText: "dockca policy show",
				Description: "Prints the stored policy exactly as it was given to 'dockca policy set'. Without a stored policy it\n" +
					"says so on standard error: the built-in roles apply.",
				Action: func(c *cli.Context) error {
					if err := argsExactly(c, 0, ""); err != nil {
						return err
					}
					var p *store.Policy
					err := withAdmin(c, e, false, func(adm admin.Admin) error {
						var err error
						p, err = adm.Policy(c.Context)
						return err
					})
					if errors.Is(err, store.ErrNoPolicy) {
						fmt.Fprintln(e.Stderr, "No policy is stored: the built-in roles (readonly, operator, admin) apply.")
						return nil
					}
					if err != nil {
						return fmt.Errorf("policy show: %w", err)
					}
					_, err = c.App.Writer.Write(p.YAML)
					return err
				},
			},
		},
	}
}
