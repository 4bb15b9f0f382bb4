package main

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/contexts"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/pki"
)

func dockerConfigFlag() cli.Flag {
	return &cli.StringFlag{Name: "docker-config", Usage: "the docker CLI's configuration `DIR` (default $DOCKER_CONFIG, else ~/.docker)"}
}

func contextOptions(c *cli.Context) contexts.Options {
	return contexts.Options{DockerConfigDir: c.String("docker-config")}
}

// crlCache is the CRL cache of contexts enrolled from CA services, beside
// the docker configuration they live in.
func crlCache(o contexts.Options) *enroll.CRLCache {
	return &enroll.CRLCache{Dir: filepath.Join(o.CacheDir(), "crl")}
}

func newContextCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "context",
		Usage: "write and manage docker CLI contexts that use dockca client certificates",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "issue a client certificate and create a docker context with it",
				UsageText: "dockca context add NAME --host tcp://HOST:PORT [--client NAME] [--role R] [--scope G]... [--ttl D] [--description TEXT] [--use] [--force]",
				Description: "Creates docker context NAME (as 'docker context create' would) whose endpoint is --host with TLS\n" +
					"verification: ca.pem = the dockca root, cert.pem = a new client certificate (leaf then intermediate),\n" +
					"key.pem = its key. The client name defaults to NAME. --use makes it the current context, keeping every\n" +
					"other key of config.json. Refuses a NAME docker rejects, an existing context unless --force, and a\n" +
					"--host that is malformed or does not accept TCP connections (skip that check with --no-check).\n\n" +
					"With --ca-url and --token the certificate comes from a dockca service: the key is generated here and\n" +
					"never leaves this machine, the token decides the client name and role, trust in the service is pinned\n" +
					"by --fingerprint (or confirmed on a terminal), and no CA database is created here. Before the token is\n" +
					"spent, --host must answer TLS with a certificate that chains to the service's root and covers its\n" +
					"host name (a daemon of another name, of another CA or without TLS is refused; --no-check skips this).\n" +
					"The context records the CA URL and the root's fingerprint, for 'context renew' and 'context ls'.",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "host", Usage: "the daemon's `URL`, tcp://HOST:PORT"},
					&cli.StringFlag{Name: "client", Usage: "client `NAME` in the certificate (default: the context name)"},
					&cli.StringFlag{Name: "role", Value: string(pki.RoleAdmin), Usage: "`ROLE` of the certificate: readonly, operator or admin"},
					scopeFlag(),
					&cli.StringFlag{Name: "ttl", Usage: "certificate lifetime `D` (default 30d, at most 90d)"},
					&cli.StringFlag{Name: "description", Usage: "`TEXT` shown by 'docker context ls'"},
					&cli.BoolFlag{Name: "use", Usage: "make it the current docker context"},
					&cli.BoolFlag{Name: "force", Usage: "replace an existing context of that name, even one dockca did not write"},
					&cli.BoolFlag{Name: "no-check", Usage: "do not check --host first (that it accepts connections; with --ca-url, that it is a TLS daemon of the CA)"},
					dockerConfigFlag(),
				}, remoteFlags("dockca token create --kind client NAME")...),
				Action: func(c *cli.Context) error {
					if err := argsExactly(c, 1, "NAME"); err != nil {
						return err
					}
					if !c.IsSet("host") {
						return usagef("context add: --host tcp://HOST:PORT is required")
					}
					if err := pki.CheckRoleName(pki.Role(c.String("role"))); err != nil {
						return usagef("context add: %v", err)
					}
					ttl, err := ttlFlag(c)
					if err != nil {
						return err
					}
					scope, err := groupsFlag(c, "scope")
					if err != nil {
						return err
					}
					o := contexts.AddOptions{
						Options: contextOptions(c), Name: c.Args().First(), Host: c.String("host"),
						Client: c.String("client"), Role: pki.Role(c.String("role")), TTL: ttl,
						Description: c.String("description"), Use: c.Bool("use"), Force: c.Bool("force"),
						SkipHostCheck: c.Bool("no-check"),
					}
					r, err := remoteFromFlags(c, e, pki.KindClient)
					if err != nil {
						return fmt.Errorf("context add %s: %w", o.Name, err)
					}
					if r != nil {
						r.holder = pki.HolderHere("docker context " + o.Name)
						return addRemoteContext(c, r, o, scope)
					}
					l := newLocalCA(c, e)
					l.groups = scope
					defer l.Close()
					return contexts.Add(c.Context, o, l, c.App.Writer)
				},
			},
			{
				Name:      "ls",
				Usage:     "list the docker contexts dockca wrote",
				UsageText: "dockca context ls [--json | --format TEMPLATE]",
				Description: "Name, host, client, role, expiry and status: valid, expiring (within 7 days), expired, or revoked\n" +
					"(when this machine holds the CA, or from the CA service's CRL for contexts enrolled from one), invalid\n" +
					"when the TLS files are missing or do not match, and unknown when the service's CRL cannot be had (it\n" +
					"is fetched once per run with a 3 s timeout; a copy kept offline still shows revocations).\n" +
					"--format takes a Go template over each context's fields: .Name .Host .Client .Role .Serial .NotAfter\n" +
					".Status .Problem .Current .Description ('{{json .}}' is one --json object a line).",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}, formatFlag(), dockerConfigFlag()},
				Action: func(c *cli.Context) error {
					if err := argsExactly(c, 0, ""); err != nil {
						return err
					}
					if err := outputMode(c); err != nil {
						return err
					}
					sc, done, err := openRevocationView(c, e)
					if err != nil {
						return err
					}
					defer done()
					o := contextOptions(c)
					infos, err := contexts.List(c.Context, o, contextStatus{local: sc, crl: crlCache(o)})
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return contexts.WriteJSON(c.App.Writer, infos)
					}
					if c.IsSet("format") {
						return writeFormatted(c, infos, c.String("format"), func(w io.Writer) error { return contexts.WriteTable(w, infos) })
					}
					return contexts.WriteTable(c.App.Writer, infos)
				},
			},
			{
				Name:      "rm",
				Usage:     "remove docker contexts dockca wrote (and optionally revoke their certificates)",
				UsageText: "dockca context rm [--revoke] NAME...",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "revoke", Usage: "also revoke each context's certificate (needs the CA)"}, dockerConfigFlag()},
				Action: func(c *cli.Context) error {
					if c.Args().Len() == 0 {
						return usagef("context rm: missing NAME")
					}
					o := contexts.RemoveOptions{Options: contextOptions(c), Names: c.Args().Slice(), Revoke: c.Bool("revoke")}
					var rv contexts.Revoker
					if o.Revoke {
						l := newLocalCA(c, e)
						defer l.Close()
						rv = l
					}
					return contexts.Remove(c.Context, o, rv, c.App.Writer)
				},
			},
			{
				Name:      "renew",
				Usage:     "give dockca contexts new certificates for the same client and role",
				UsageText: "dockca context renew [--within D] [--force] [--revoke-old] [--ttl D] NAME...|--all",
				Description: "The TLS material is swapped in with one atomic rename, so a context never holds a certificate and a\n" +
					"key that do not match, even if dockca dies midway. Only certificates that are due are renewed: in the\n" +
					"last third of their lifetime, or expiring within --within D; --force renews regardless. The old\n" +
					"certificate then shows as superseded in 'dockca ls'; --revoke-old also revokes it (reason superseded).\n" +
					"Contexts enrolled from a CA service renew there, over mutual TLS, after a look at its CRL.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "all", Usage: "renew every dockca context"},
					&cli.StringFlag{Name: "within", Usage: "due when expiring within `D` (default: the last third of the lifetime)"},
					&cli.BoolFlag{Name: "force", Usage: "renew even if not due"},
					&cli.BoolFlag{Name: "revoke-old", Usage: "revoke each replaced certificate (reason superseded)"},
					&cli.StringFlag{Name: "ttl", Usage: "new lifetime `D` (default: the one the context was created with)"},
					dockerConfigFlag(),
				},
				Action: func(c *cli.Context) error {
					if c.Bool("all") == (c.Args().Len() > 0) {
						return usagef("context renew: name contexts or use --all, not both or neither")
					}
					ttl, err := ttlFlag(c)
					if err != nil {
						return err
					}
					var within time.Duration
					if c.IsSet("within") {
						if within, err = pki.ParseTTL(c.String("within")); err != nil || within <= 0 {
							return usagef("context renew: --within: %q is not a positive duration", c.String("within"))
						}
					}
					o := contexts.RenewOptions{Options: contextOptions(c), Names: c.Args().Slice(), All: c.Bool("all"), Within: within, TTL: ttl,
						Force: c.Bool("force"), RevokeOld: c.Bool("revoke-old")}
					// Contexts enrolled from a CA service renew there, over mutual
					// TLS; the others at the local CA, opened only if needed.
					l := newLocalCA(c, e)
					defer l.Close()
					return contexts.Renew(c.Context, o, serviceRenewer{localCA: l, crl: crlCache(o.Options)}, c.App.Writer)
				},
			},
			{
				Name:      "env",
				Usage:     "print DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH exports for a dockca context",
				UsageText: "dockca context env NAME",
				Description: "For tools that do not read docker contexts: the context's three TLS files are copied to a private\n" +
					"directory (0700, files 0600) and the exports printed, ready for eval \"$(dockca context env NAME)\".",
				Flags: []cli.Flag{&cli.StringFlag{Name: "dir", Usage: "materialise the files in `DIR` instead"}, dockerConfigFlag()},
				Action: func(c *cli.Context) error {
					if err := argsExactly(c, 1, "NAME"); err != nil {
						return err
					}
					return contexts.Env(c.Context, contexts.EnvOptions{Options: contextOptions(c), Name: c.Args().First(), Dir: c.String("dir")}, c.App.Writer)
				},
			},
		},
	}
}

// addRemoteContext is context add against a dockca service: the token
// fixes the client and role, which explicit flags may only repeat.
func addRemoteContext(c *cli.Context, r *remoteCA, o contexts.AddOptions, scope []string) error {
	if c.IsSet("ttl") {
		return usagef("context add: --ttl cannot be used with --ca-url: the token sets the lifetime")
	}
	if c.IsSet("client") && o.Client != r.claims.Subject {
		return fmt.Errorf("context add %s: the token is for client %q, not %q", o.Name, r.claims.Subject, o.Client)
	}
	if c.IsSet("role") && o.Role != r.claims.Dockca.Role {
		return fmt.Errorf("context add %s: the token is for role %q, not %q", o.Name, r.claims.Dockca.Role, o.Role)
	}
	if c.IsSet("scope") && !slices.Equal(scope, r.claims.Dockca.Groups) {
		return fmt.Errorf("context add %s: the token is for scope %q, not %q", o.Name, pki.DescribeScope(r.claims.Dockca.Groups), pki.DescribeScope(scope))
	}
	o.Client, o.Role, o.CAURLs, o.TTL = r.claims.Subject, r.claims.Dockca.Role, r.caURLs, 0
	return contexts.Add(c.Context, o, r, c.App.Writer)
}
