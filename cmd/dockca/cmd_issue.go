package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/pki"
)

type issueOptions struct {
	req   ca.Request
	out   string
	force bool
}

func newIssueCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "issue",
		Usage: "issue a daemon (server) or client certificate with a new key",
		Subcommands: []*cli.Command{
			{
				Name:      "daemon",
				Usage:     "issue a server certificate for dockerd on HOST",
				UsageText: "dockca issue daemon HOST [--san DNS-or-IP]... [--group G]... [--ttl D] [--out DIR] [--force]",
				Description: "Issues a server certificate: CN=HOST, SANs = HOST plus each --san (typed as DNS name or IP),\n" +
					"extended key usage serverAuth only. Writes DIR/ca.pem (the root), DIR/server-cert.pem (leaf then\n" +
					"intermediate), DIR/server-key.pem (0600, unencrypted: dockerd cannot read encrypted keys) and\n" +
					"DIR/daemon.json, a fragment with tlsverify/tlscacert/tlscert/tlskey for /etc/docker/daemon.json.\n" +
					"Each --group puts the daemon in a group (URI SAN urn:dockca:group:G, recorded and shown by ls):\n" +
					"clients scoped to one of its groups reach it, where its plugin or gate runs with the same --group.\n" +
					"Default TTL 90d, maximum 365d.",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "san", Usage: "an extra DNS name or IP `ADDRESS` (repeatable)"},
					groupFlag(),
					&cli.StringFlag{Name: "ttl", Usage: "lifetime `D` (default 90d, at most 365d)"},
					&cli.StringFlag{Name: "out", Usage: "output `DIR` (default ./HOST), created 0700 if missing"},
					&cli.BoolFlag{Name: "force", Usage: "replace existing files in DIR"},
				},
				Action: func(c *cli.Context) error {
					if err := argsExactly(c, 1, "HOST"); err != nil {
						return err
					}
					ttl, err := ttlFlag(c)
					if err != nil {
						return err
					}
					groups, err := groupsFlag(c, "group")
					if err != nil {
						return err
					}
					o := issueOptions{
						req:   ca.Request{Kind: pki.KindDaemon, Name: c.Args().First(), SANs: c.StringSlice("san"), Groups: groups, TTL: ttl},
						out:   c.String("out"),
						force: c.Bool("force"),
					}
					return withIssuer(c, e, o.req, func(adm admin.Admin) error { return runIssue(c.Context, adm, o, c.App.Writer) })
				},
			},
			{
				Name:      "client",
				Usage:     "issue a client certificate for NAME (a person or a tool)",
				UsageText: "dockca issue client NAME [--role readonly|operator|admin|POLICY-ROLE] [--scope G]... [--ttl D] [--out DIR] [--force]",
				Description: "Issues a client certificate: CN=NAME, extended key usage clientAuth only, the role carried in the\n" +
					"certificate (its Subject OU) and recorded in the database. Writes DIR/ca.pem, DIR/cert.pem (leaf then\n" +
					"intermediate) and DIR/key.pem (0600): the DOCKER_CERT_PATH layout.\n\n" +
					"The default role is admin because that is what any valid certificate means to a dockerd that does\n" +
					"not run the dockca authorization plugin: full control of the host. readonly and operator are\n" +
					"enforced only where the plugin runs. Default TTL 30d, maximum 90d.\n\n" +
					"Each --scope names a group of daemons the certificate may reach (URI SAN urn:dockca:scope:G); the\n" +
					"plugin and the gate deny it on daemons in none of them. Without --scope it reaches every daemon.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "role", Value: string(pki.RoleAdmin), Usage: "`ROLE`: readonly, operator, admin or a role of the stored policy"},
					scopeFlag(),
					&cli.StringFlag{Name: "ttl", Usage: "lifetime `D` (default 30d, at most 90d)"},
					&cli.StringFlag{Name: "out", Usage: "output `DIR` (default ./NAME), created 0700 if missing"},
					&cli.BoolFlag{Name: "force", Usage: "replace existing files in DIR"},
				},
				Action: func(c *cli.Context) error {
					if err := argsExactly(c, 1, "NAME"); err != nil {
						return err
					}
					ttl, err := ttlFlag(c)
					if err != nil {
						return err
					}
					if err := pki.CheckRoleName(pki.Role(c.String("role"))); err != nil {
						return usagef("issue client: %v", err)
					}
					scope, err := groupsFlag(c, "scope")
					if err != nil {
						return err
					}
					o := issueOptions{
						req:   ca.Request{Kind: pki.KindClient, Name: c.Args().First(), Role: pki.Role(c.String("role")), Groups: scope, TTL: ttl},
						out:   c.String("out"),
						force: c.Bool("force"),
					}
					return withIssuer(c, e, o.req, func(adm admin.Admin) error { return runIssue(c.Context, adm, o, c.App.Writer) })
				},
			},
		},
	}
}

func ttlFlag(c *cli.Context) (time.Duration, error) {
	if !c.IsSet("ttl") {
		return 0, nil
	}
	d, err := pki.ParseTTL(c.String("ttl"))
	if err != nil {
		return 0, usagef("%s: --ttl: %v", cmdName(c), err)
	}
	if d <= 0 {
		return 0, usagef("%s: --ttl must be positive", cmdName(c))
	}
	return d, nil
}

func groupFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "group", Usage: "a `GROUP` the daemon belongs to, e.g. staging or prod (repeatable)"}
}

func scopeFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "scope", Usage: "a `GROUP` of daemons the client may reach (repeatable; none: every daemon)"}
}

// groupsFlag reads a repeatable --group or --scope flag: valid group
// names, sorted, without duplicates.
func groupsFlag(c *cli.Context, flag string) ([]string, error) {
	g, err := pki.NormalizeGroups(c.StringSlice(flag))
	if err != nil {
		return nil, usagef("%s: --%s: %v", cmdName(c), flag, err)
	}
	return g, nil
}

// withIssuer prechecks the request's form, then runs fn with the CA of
// the home (the running service, or the database).
func withIssuer(c *cli.Context, e *env, r ca.Request, fn func(admin.Admin) error) error {
	if r.CSR == nil {
		if err := ca.Precheck(r); err != nil {
			return fmt.Errorf("%s %s: %w", cmdName(c), r.Name, err)
		}
	}
	return withAdmin(c, e, true, fn)
}

// runIssue checks everything that can be checked before signing (policy,
// output directory, existing files), so bad input issues nothing, then
// signs, stores and writes the files.
func runIssue(ctx context.Context, adm admin.Admin, o issueOptions, w io.Writer) error {
	what := fmt.Sprintf("issue %s %s", o.req.Kind, o.req.Name)
	n, err := adm.CheckRequest(ctx, o.req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	dir := o.out
	if dir == "" {
		dir = n.Name
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := preflightDir(dir, o.req.Kind, o.force); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	req := o.req
	req.Holder = pki.HolderHere(dir)
	iss, err := adm.Issue(ctx, req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	files, err := iss.Files(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := atomicfile.PrivateDir(dir); err != nil {
		return fmt.Errorf("%s: certificate %s was issued but not written: %w", what, iss.Record.Serial, err)
	}
	if err := atomicfile.WriteAll(files, o.force); err != nil {
		return fmt.Errorf("%s: certificate %s was issued but not written: %w", what, iss.Record.Serial, err)
	}
	printIssued(w, iss, files)
	return nil
}

// preflightDir refuses an output directory that cannot take the files
// before anything is signed.
func preflightDir(dir string, kind pki.Kind, force bool) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		probe, err := os.CreateTemp(dir, ".dockca-probe-*")
		if err != nil {
			return fmt.Errorf("cannot write to %s: %w", dir, err)
		}
		probe.Close()
		os.Remove(probe.Name())
	} else if err := writableParent(dir); err != nil {
		return err
	}
	if force {
		return nil
	}
	names := []string{pki.FileCA, pki.FileClientCert, pki.FileClientKey}
	if kind == pki.KindDaemon {
		names = []string{pki.FileCA, pki.FileServerCert, pki.FileServerKey, pki.FileDaemonJSON}
	}
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			return fmt.Errorf("%s already exists (use --force to replace it)", filepath.Join(dir, n))
		}
	}
	return nil
}

func writableParent(dir string) error {
	p := filepath.Dir(dir)
	for {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", p)
			}
			probe, err := os.CreateTemp(p, ".dockca-probe-*")
			if err != nil {
				return fmt.Errorf("cannot create %s: %w", dir, err)
			}
			probe.Close()
			os.Remove(probe.Name())
			return nil
		}
		parent := filepath.Dir(p)
		if parent == p {
			return fmt.Errorf("cannot create %s", dir)
		}
		p = parent
	}
}

func printIssued(w io.Writer, iss *ca.Issued, files []atomicfile.File) {
	r := iss.Record
	fmt.Fprintf(w, "Issued %s certificate for %s", r.Kind, r.Name)
	if r.Role != "" {
		fmt.Fprintf(w, " (role %s)", r.Role)
	}
	switch {
	case r.Kind == pki.KindClient:
		fmt.Fprintf(w, ", reaching %s", pki.DescribeScope(r.Groups))
	case len(r.Groups) > 0:
		fmt.Fprintf(w, " in groups %s", strings.Join(r.Groups, ","))
	}
	fmt.Fprintf(w, "\n  serial   %s\n  expires  %s\n", r.Serial, r.NotAfter.UTC().Format(time.RFC3339))
	for _, f := range files {
		fmt.Fprintf(w, "  wrote    %s\n", f.Path)
	}
	dir := filepath.Dir(files[0].Path)
	if r.Kind == pki.KindDaemon {
		fmt.Fprintf(w, "\nStart dockerd with these files (port 2376 is Docker's TLS port):\n")
		fmt.Fprintf(w, "  dockerd --tlsverify --tlscacert=%s --tlscert=%s --tlskey=%s -H=0.0.0.0:2376 -H=unix:///var/run/docker.sock\n",
			filepath.Join(dir, pki.FileCA), filepath.Join(dir, pki.FileServerCert), filepath.Join(dir, pki.FileServerKey))
		fmt.Fprintf(w, "or merge %s into /etc/docker/daemon.json (or run 'dockca daemon setup').\n", filepath.Join(dir, pki.FileDaemonJSON))
		return
	}
	fmt.Fprintf(w, "\nUse it with:\n  export DOCKER_HOST=tcp://HOST:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=%s\n", dir)
}
