package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/pki"
)

type signOptions struct {
	req ca.Request
	csr string // file
	out string // file; "" or "-" = stdout
}

func newSignCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "sign",
		Usage:     "sign a certificate request made elsewhere (the key never reaches the CA)",
		UsageText: "dockca sign --kind client|daemon [--role R] [--scope G]... [--group G]... [--ttl D] [--out FILE] CSR_FILE",
		Description: "Signs a PEM or DER CSR (for example from 'openssl req -new'). The CSR's signature is verified and its\n" +
			"names go through the same policy as 'dockca issue': a client CSR's CN is the client name and it may not\n" +
			"ask for host names; a daemon CSR's CN (or first SAN) is the host and its DNS/IP SANs are kept.\n" +
			"Prints the certificate followed by the intermediate (PEM), or writes them to --out.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "kind", Usage: "`KIND` of certificate: client or daemon"},
			&cli.StringFlag{Name: "role", Usage: "`ROLE` of a client certificate: readonly, operator, admin or a role of the stored policy (default admin)"},
			scopeFlag(),
			groupFlag(),
			&cli.StringFlag{Name: "ttl", Usage: "lifetime `D` (defaults and maximums as for issue)"},
			&cli.StringFlag{Name: "out", Usage: "write the chain to `FILE` instead of standard output"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 1, "CSR_FILE"); err != nil {
				return err
			}
			if !c.IsSet("kind") {
				return usagef("sign: --kind client|daemon is required")
			}
			kind, err := pki.ParseKind(c.String("kind"))
			if err != nil {
				return usagef("sign: %v", err)
			}
			if c.IsSet("role") {
				if err := pki.CheckRoleName(pki.Role(c.String("role"))); err != nil {
					return usagef("sign: %v", err)
				}
			}
			ttl, err := ttlFlag(c)
			if err != nil {
				return err
			}
			groups, err := kindGroups(c, kind)
			if err != nil {
				return err
			}
			o := signOptions{req: ca.Request{Kind: kind, Role: pki.Role(c.String("role")), Groups: groups, TTL: ttl}, csr: c.Args().First(), out: c.String("out")}
			return withAdmin(c, e, true, func(adm admin.Admin) error { return runSign(c.Context, adm, o, c.App.Writer) })
		},
	}
}

// kindGroups reads --scope for a client and --group for a daemon,
// refusing the other one.
func kindGroups(c *cli.Context, kind pki.Kind) ([]string, error) {
	flag, other := "scope", "group"
	if kind == pki.KindDaemon {
		flag, other = "group", "scope"
	}
	if c.IsSet(other) {
		return nil, usagef("%s: --%s is for %s certificates; a %s has --%s", cmdName(c), other, otherKind(kind), kind, flag)
	}
	return groupsFlag(c, flag)
}

func otherKind(k pki.Kind) pki.Kind {
	if k == pki.KindDaemon {
		return pki.KindClient
	}
	return pki.KindDaemon
}

func runSign(ctx context.Context, adm admin.Admin, o signOptions, w io.Writer) error {
	b, err := os.ReadFile(o.csr)
	if err != nil {
		return fmt.Errorf("sign %s: %w", o.csr, err)
	}
	csr, err := ca.ParseCSR(b)
	if err != nil {
		return fmt.Errorf("sign %s: %w", o.csr, err)
	}
	o.req.CSR = csr
	if _, err := adm.CheckRequest(ctx, o.req); err != nil {
		return fmt.Errorf("sign %s: %w", o.csr, err)
	}
	toFile := o.out != "" && o.out != "-"
	if toFile {
		if _, err := os.Lstat(o.out); err == nil {
			return fmt.Errorf("sign %s: %s already exists", o.csr, o.out)
		}
	}
	iss, err := adm.Issue(ctx, o.req)
	if err != nil {
		return fmt.Errorf("sign %s: %w", o.csr, err)
	}
	if toFile {
		if err := atomicfile.WriteAll([]atomicfile.File{{Path: o.out, Data: iss.ChainPEM(), Mode: 0o644}}, false); err != nil {
			return fmt.Errorf("sign %s: certificate %s was issued but not written: %w", o.csr, iss.Record.Serial, err)
		}
		fmt.Fprintf(w, "Signed %s certificate for %s, serial %s, written to %s\n", iss.Record.Kind, iss.Record.Name, iss.Record.Serial, o.out)
		return nil
	}
	_, err = w.Write(iss.ChainPEM())
	return err
}
