package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/serve"
	"github.com/dockca/dockca/store"
)

func newTokenCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "mint and list one-time enrollment tokens for dockca serve",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "mint a one-time token bound to a kind, name, role and SANs",
				UsageText: "dockca token create --kind client|daemon|revoke [--role R] [--san X]... [--ttl D] [--token-ttl 1h] [--ca-url URL] NAME",
				Description: "Prints the token on standard output and, on standard error, the root fingerprint and a\n" +
					"ready-to-paste enrollment command. NAME is the client name, the daemon host, or (--kind revoke)\n" +
					"the serial of the certificate an admin may revoke with it via POST /v1/revoke.\n" +
					"The token works once and expires after --token-ttl (default 1h, at most 24h); --ttl is the\n" +
					"lifetime of the certificate it buys. While 'dockca serve' runs, the token is minted by the\n" +
					"service over its admin socket; otherwise the CA password unlocks the token key here.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "kind", Required: true, Usage: "`KIND` client, daemon or revoke"},
					&cli.StringFlag{Name: "role", Usage: "client `ROLE`: readonly, operator or admin (default admin)"},
					&cli.StringSliceFlag{Name: "san", Usage: "extra daemon name `X` (DNS or IP); repeatable"},
					&cli.StringFlag{Name: "ttl", Usage: "lifetime `D` of the certificate (default: the kind's)"},
					&cli.StringFlag{Name: "token-ttl", Value: "1h", Usage: "lifetime `D` of the token (at most 24h)"},
					caURLFlag("the service `URL` (default: the one dockca serve recorded)"),
				},
				Action: func(c *cli.Context) error {
					if err := argsExactly(c, 1, "NAME"); err != nil {
						return err
					}
					req := api.TokenRequest{Kind: c.String("kind"), Name: c.Args().First(), Role: c.String("role"),
						SANs: c.StringSlice("san"), CertTTL: c.String("ttl"), TTL: c.String("token-ttl"), CAURL: c.String("ca-url"), By: actor()}
					switch req.Kind {
					case "client", "daemon", ca.TokenKindRevoke:
					default:
						return usagef("token create: unknown kind %q (use client, daemon or revoke)", req.Kind)
					}
					// Bad input fails before any password is asked.
					tr, err := serve.TokenRequestFromAPI(req, "https://precheck.invalid")
					if err == nil {
						err = ca.CheckTokenRequest(&tr)
					}
					if err != nil {
						return inputError(err, "token create")
					}
					resp, err := createToken(c, e, req)
					if err != nil {
						return fmt.Errorf("token create: %w", err)
					}
					fmt.Fprintln(c.App.Writer, resp.Token)
					printTokenHints(e, resp)
					return nil
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

// serviceClient returns the admin client of a service running for the
// home, for commands that found the database locked.
func serviceClient(c *cli.Context, e *env, locked error) (*serve.AdminClient, error) {
	home, err := homeDir(c, e)
	if err != nil {
		return nil, err
	}
	ac, err := serve.DialAdmin(home)
	if err != nil {
		return nil, fmt.Errorf("%w, and no dockca serve answers on its admin socket: %v", locked, err)
	}
	return ac, nil
}

func createToken(c *cli.Context, e *env, req api.TokenRequest) (*api.TokenResponse, error) {
	st, err := openStore(c, e, false)
	if errors.Is(err, store.ErrLocked) {
		ac, err := serviceClient(c, e, err)
		if err != nil {
			return nil, err
		}
		defer ac.Close()
		return ac.CreateToken(c.Context, req)
	}
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return createTokenLocal(c, e, st, req)
}

func createTokenLocal(c *cli.Context, e *env, st *store.Store, req api.TokenRequest) (*api.TokenResponse, error) {
	ctx := c.Context
	rec, err := st.CA(ctx)
	if err != nil {
		return nil, err
	}
	if req.CAURL == "" {
		u, err := st.Setting(ctx, serve.SettingURL)
		if err != nil {
			return nil, err
		}
		if len(u) == 0 {
			return nil, errors.New("no CA URL: pass --ca-url (dockca serve records its URL when it starts)")
		}
		req.CAURL = string(u)
	}
	tr, err := serve.TokenRequestFromAPI(req, "")
	if err != nil {
		return nil, err
	}
	tr.CreatedBy = req.By
	var pw []byte
	if rec.Encrypted {
		if pw, err = readPassword(c, e, false); err != nil {
			return nil, err
		}
	}
	m, err := ca.UnlockTokenKey(ctx, st, pw)
	if err != nil {
		return nil, err
	}
	tok, t, err := ca.CreateToken(ctx, st, m, tr)
	if err != nil {
		return nil, err
	}
	return &api.TokenResponse{Token: tok, Info: serve.TokenInfo(t), CAURL: tr.CAURL, RootFingerprint: rec.RootFingerprint}, nil
}

// printTokenHints tells the admin, on stderr, how the token is used.
func printTokenHints(e *env, r *api.TokenResponse) {
	w := e.Stderr
	fmt.Fprintf(w, "Token %s for %s %q, valid until %s, single use.\n", r.Info.ID, r.Info.Kind, r.Info.Name, r.Info.ExpiresAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Root fingerprint (SHA-256): %s\n", r.RootFingerprint)
	switch r.Info.Kind {
	// The token goes in the environment, not on the command line, where
	// other local users could read it in the process list.
	case "client":
		fmt.Fprintf(w, "On the client machine:\n  DOCKCA_TOKEN=%s %s context add %s --host tcp://DOCKER_HOST:2376 --ca-url %s --fingerprint %s\n",
			r.Token, e.Self, r.Info.Name, r.CAURL, r.RootFingerprint)
	case "daemon":
		fmt.Fprintf(w, "On the Docker host:\n  DOCKCA_TOKEN=%s %s daemon setup %s --ca-url %s --fingerprint %s\n",
			r.Token, e.Self, r.Info.Name, r.CAURL, r.RootFingerprint)
	case ca.TokenKindRevoke:
		fmt.Fprintf(w, "To revoke: curl --cacert ca.pem -X POST %s%s -d '{\"token\": \"%s\"}'\n", r.CAURL, api.PathRevoke, r.Token)
	}
}

func listTokens(c *cli.Context, e *env) ([]api.TokenInfo, error) {
	st, err := openStore(c, e, true)
	if errors.Is(err, store.ErrLocked) {
		ac, err := serviceClient(c, e, err)
		if err != nil {
			return nil, err
		}
		defer ac.Close()
		return ac.Tokens(c.Context)
	}
	if err != nil {
		return nil, err
	}
	defer st.Close()
	toks, err := st.Tokens(c.Context)
	if err != nil {
		return nil, err
	}
	out := make([]api.TokenInfo, 0, len(toks))
	for _, t := range toks {
		out = append(out, serve.TokenInfo(t))
	}
	return out, nil
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Kind, t.Name, dash(t.Role), t.Status,
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

// revokeViaService revokes through a running service's admin socket when
// the database is locked by it.
func revokeViaService(c *cli.Context, e *env, locked error, reason ca.Reason) error {
	ac, err := serviceClient(c, e, locked)
	if err != nil {
		return err
	}
	defer ac.Close()
	resp, err := ac.Revoke(c.Context, api.AdminRevokeRequest{Targets: c.Args().Slice(), Reason: reason.Name})
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	for _, r := range resp.Results {
		printRevoked(c.App.Writer, r)
	}
	return nil
}
