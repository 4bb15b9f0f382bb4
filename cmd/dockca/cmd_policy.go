package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/store"
)

// runPolicySet validates and stores the policy read from file.
func runPolicySet(ctx context.Context, adm admin.Admin, file string, data []byte, w io.Writer) error {
	p, err := adm.SetPolicy(ctx, data, actor())
	if err != nil {
		return fmt.Errorf("policy set: %q: %w", file, err)
	}
	fmt.Fprintf(w, "Stored the policy from %s (sha256 %s); roles: %s\n", file, p.SHA256, strings.Join(p.Roles, ", "))
	return nil
}

// runPolicyShow prints the stored policy, or says on stderr that none is.
func runPolicyShow(ctx context.Context, adm admin.Admin, w, stderr io.Writer) error {
	p, err := adm.Policy(ctx)
	if errors.Is(err, store.ErrNoPolicy) {
		fmt.Fprintln(stderr, "No policy is stored: the built-in roles (readonly, operator, admin) apply.")
		return nil
	}
	if err != nil {
		return fmt.Errorf("policy show: %w", err)
	}
	_, err = w.Write(p.YAML)
	return err
}

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
					return withAdmin(c, e, true, func(adm admin.Admin) error {
						return runPolicySet(c.Context, adm, file, data, c.App.Writer)
					})
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
					return withAdmin(c, e, false, func(adm admin.Admin) error {
						return runPolicyShow(c.Context, adm, c.App.Writer, e.Stderr)
					})
				},
			},
		},
	}
}
