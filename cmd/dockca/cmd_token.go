package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
)

func newTokenCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "mint and list one-time enrollment tokens for dockca serve",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "mint one-time tokens bound to a kind, name, role and SANs",
				UsageText: "dockca token create --kind client|daemon|revoke [--role R] [--scope G]... [--san X]... [--group G]... [--ttl D] [--token-ttl 1h] [--ca-url URL] [--json] NAME...|--from-file FILE",
				Description: "With one NAME, prints the token on standard output and, on standard error, the root fingerprint and a\n" +
					"ready-to-paste enrollment command. With several NAMEs or --from-file FILE (one name per line, blank\n" +
					"lines and # comments skipped, - for standard input) it mints a token for each, all recorded in one\n" +
					"transaction (all or none), and prints one line per token, NAME TOKEN; --json prints an array of\n" +
					"{name, token, expires} instead. NAME is the client name, the daemon host, or (--kind revoke) the\n" +
					"serial of the certificate an admin may revoke with it via POST /v1/revoke.\n" +
					"A token works once and expires after --token-ttl (default 1h, at most 24h); --ttl is the lifetime of\n" +
					"the certificate it buys. While 'dockca serve' runs, tokens are minted by the service over its admin\n" +
					"socket; otherwise the CA password unlocks the token key here.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "kind", Required: true, Usage: "`KIND` client, daemon or revoke"},
					&cli.StringFlag{Name: "role", Usage: "client `ROLE`: readonly, operator, admin or a role of the stored policy (default admin)"},
					&cli.StringSliceFlag{Name: "san", Usage: "extra daemon name `X` (DNS or IP); repeatable"},
					scopeFlag(),
					groupFlag(),
					&cli.StringFlag{Name: "ttl", Usage: "lifetime `D` of the certificate (default: the kind's)"},
					&cli.StringFlag{Name: "token-ttl", Value: "1h", Usage: "lifetime `D` of the token (at most 24h)"},
					caURLFlag("the service `URL` (default: the one dockca serve recorded)"),
					&cli.StringFlag{Name: "from-file", Usage: "read names from `FILE`, one per line (- for standard input)"},
					&cli.BoolFlag{Name: "json", Usage: "print a JSON array of {name, token, expires}"},
				},
				Action: func(c *cli.Context) error {
					names, err := tokenNames(c, e)
					if err != nil {
						return err
					}
					switch kind := c.String("kind"); kind {
					case string(pki.KindClient), string(pki.KindDaemon), pki.TokenKindRevoke:
					default:
						return usagef("token create: unknown kind %q (use client, daemon or revoke)", kind)
					}
					// A malformed lifetime is a malformed command line (2); one the
					// CA refuses is a policy refusal (1), found by the precheck.
					for _, f := range []string{"ttl", "token-ttl"} {
						if v := c.String(f); v != "" {
							if _, err := pki.ParseTTL(v); err != nil {
								return usagef("token create: --%s: %v", f, err)
							}
						}
					}
					var groups []string
					if kind := pki.Kind(c.String("kind")); kind == pki.KindClient || kind == pki.KindDaemon {
						if groups, err = kindGroups(c, kind); err != nil {
							return err
						}
					} else if c.IsSet("scope") || c.IsSet("group") {
						return usagef("token create: a revoke token takes no --scope or --group")
					}
					reqs := make([]api.TokenRequest, len(names))
					for i, name := range names {
						reqs[i] = api.TokenRequest{Kind: c.String("kind"), Name: name, Role: pki.Role(c.String("role")),
							SANs: c.StringSlice("san"), Groups: groups, CertTTL: c.String("ttl"), TTL: c.String("token-ttl"), CAURL: c.String("ca-url"), By: actor()}
						// Bad input fails before any password is asked.
						if err := admin.PrecheckTokenRequest(reqs[i]); err != nil {
							return inputError(err, "token create")
						}
					}
					o := tokenCreateOptions{reqs: reqs, asJSON: c.Bool("json"), fleet: len(names) > 1 || c.IsSet("from-file"), self: e.Self}
					return withAdmin(c, e, true, func(adm admin.Admin) error {
						return runTokenCreate(c.Context, adm, o, c.App.Writer, e.Stderr)
					})
				},
			},
			{
				Name:      "ls",
				Usage:     "list tokens: outstanding, used and expired (never the tokens themselves)",
				UsageText: "dockca token ls [--json | --format TEMPLATE]",
				Description: "--format takes a Go template over each token's fields: .ID .Kind .Name .Role .SANs .CertTTL\n" +
					".CreatedAt .ExpiresAt .CreatedBy .UsedAt .Serial .Status ('{{json .}}' is one --json object a line).",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}, formatFlag()},
				Action: func(c *cli.Context) error {
					if err := argsExactly(c, 0, ""); err != nil {
						return err
					}
					if err := outputMode(c); err != nil {
						return err
					}
					infos, err := listTokens(c, e)
					if err != nil {
						return fmt.Errorf("token ls: %w", err)
					}
					return writeTokens(c, infos, time.Now())
				},
			},
		},
	}
}

// tokenNames are the names token create mints for: its arguments, or the
// lines of --from-file.
func tokenNames(c *cli.Context, e *env) ([]string, error) {
	file := c.String("from-file")
	if file == "" {
		if c.Args().Len() == 0 {
			return nil, usagef("token create: missing NAME (or --from-file FILE)")
		}
		return c.Args().Slice(), nil
	}
	if c.Args().Len() > 0 {
		return nil, usagef("token create: give names as arguments or in --from-file, not both")
	}
	var r io.Reader = e.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("token create: %w", err)
		}
		defer f.Close()
		r = f
	}
	var names []string
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		name := strings.TrimSpace(sc.Text())
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		if strings.ContainsAny(name, " \t") {
			return nil, usagef("token create: %s line %d: %q is not one name", file, line, name)
		}
		names = append(names, name)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("token create: read %s: %w", file, err)
	}
	if len(names) == 0 {
		return nil, usagef("token create: %s names nobody", file)
	}
	return names, nil
}

type tokenCreateOptions struct {
	reqs   []api.TokenRequest
	asJSON bool
	// fleet prints NAME TOKEN lines even for one token (--from-file).
	fleet bool
	// self is how the hints name the dockca binary (./dockca).
	self string
}

// runTokenCreate mints the tokens (one transaction) and prints them: a
// single token with its usage hints on stderr, a fleet as NAME TOKEN
// lines, or JSON.
func runTokenCreate(ctx context.Context, adm admin.Admin, o tokenCreateOptions, w, stderr io.Writer) error {
	resps, err := adm.CreateTokens(ctx, o.reqs)
	if err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	return writeTokensCreated(resps, o, w, stderr)
}

func writeTokensCreated(resps []api.TokenResponse, o tokenCreateOptions, w, stderr io.Writer) error {
	if o.asJSON {
		type entry struct {
			Name    string    `json:"name"`
			Token   string    `json:"token"`
			Expires time.Time `json:"expires"`
		}
		out := make([]entry, len(resps))
		for i, r := range resps {
			out[i] = entry{Name: r.Info.Name, Token: r.Token, Expires: r.Info.ExpiresAt.UTC()}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if !o.fleet {
		fmt.Fprintln(w, resps[0].Token)
		printTokenHints(stderr, o.self, &resps[0])
		return nil
	}
	bw := bufio.NewWriter(w)
	for _, r := range resps {
		fmt.Fprintf(bw, "%s %s\n", r.Info.Name, r.Token)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	r := resps[0]
	fmt.Fprintf(stderr, "%d %s tokens, valid until %s, single use each; CA %s, root fingerprint (SHA-256) %s\n",
		len(resps), r.Info.Kind, r.Info.ExpiresAt.UTC().Format(time.RFC3339), r.CAURL, r.RootFingerprint)
	return nil
}

// printTokenHints tells the admin, on stderr, how the token is used.
func printTokenHints(w io.Writer, self string, r *api.TokenResponse) {
	fmt.Fprintf(w, "Token %s for %s %q, valid until %s, single use.\n", r.Info.ID, r.Info.Kind, r.Info.Name, r.Info.ExpiresAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Root fingerprint (SHA-256): %s\n", r.RootFingerprint)
	switch r.Info.Kind {
	// The token goes in the environment, not on the command line, where
	// other local users could read it in the process list.
	case string(pki.KindClient):
		fmt.Fprintf(w, "On the client machine:\n  DOCKCA_TOKEN=%s %s context add %s --host tcp://DOCKER_HOST:2376 --ca-url %s --fingerprint %s\n",
			r.Token, self, r.Info.Name, r.CAURL, r.RootFingerprint)
	case string(pki.KindDaemon):
		fmt.Fprintf(w, "On the Docker host:\n  DOCKCA_TOKEN=%s %s daemon setup %s --ca-url %s --fingerprint %s\n",
			r.Token, self, r.Info.Name, r.CAURL, r.RootFingerprint)
	case pki.TokenKindRevoke:
		fmt.Fprintf(w, "To revoke: curl --cacert ca.pem -X POST %s%s -d '{\"token\": \"%s\"}'\n", r.CAURL, api.PathRevoke, r.Token)
	}
}

func listTokens(c *cli.Context, e *env) ([]api.TokenInfo, error) {
	adm, err := openAdmin(c, e, false)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	return adm.Tokens(c.Context)
}

func tokenStatus(t api.TokenInfo, now time.Time) string {
	switch {
	case t.UsedAt != nil:
		return "used"
	case !now.Before(t.ExpiresAt):
		return "expired"
	}
	return "outstanding"
}

// tokenEntry is a token as token ls prints it: its record and status.
type tokenEntry struct {
	api.TokenInfo
	Status string `json:"status"`
}

// tokenEntries adds each token's status at now.
func tokenEntries(infos []api.TokenInfo, now time.Time) []tokenEntry {
	entries := make([]tokenEntry, 0, len(infos))
	for _, t := range infos {
		// UTC, as every time dockca prints.
		t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
		if t.UsedAt != nil {
			u := t.UsedAt.UTC()
			t.UsedAt = &u
		}
		entries = append(entries, tokenEntry{t, tokenStatus(t, now)})
	}
	return entries
}

func writeTokens(c *cli.Context, infos []api.TokenInfo, now time.Time) error {
	w := c.App.Writer
	entries := tokenEntries(infos, now)
	table := func(w io.Writer) error {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tNAME\tROLE\tSTATUS\tEXPIRES\tUSED\tSERIAL")
		for _, t := range entries {
			used := "-"
			if t.UsedAt != nil {
				used = t.UsedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Kind, t.Name, dash(string(t.Role)), t.Status,
				t.ExpiresAt.UTC().Format(time.RFC3339), used, dash(t.Serial))
		}
		return tw.Flush()
	}
	switch {
	case c.Bool("json"):
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	case c.IsSet("format"):
		return writeFormatted(c, entries, c.String("format"), table)
	}
	return table(w)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
