package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

func newRotateCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "rotate",
		Usage: "rotate the CA's intermediate or root without an outage",
		Description: "A rotation keeps every earlier generation (keys encrypted under the CA password) so that certificates\n" +
			"already out keep working: 'rotate intermediate' signs new certificates with a new intermediate under the\n" +
			"same root; 'rotate root' makes a new root and intermediate, and while the old root is trusted every\n" +
			"ca.pem carries both roots and new certificates also carry the intermediate cross-signed by the old root.\n" +
			"'rotate status' lists what still depends on an old generation; 'rotate finish' retires the old root.\n" +
			"Stop 'dockca serve' before rotating and start it again afterwards: it holds the database's lock.\n" +
			"With an etcd store, rotate from any host while the replicas run: each notices the new generation\n" +
			"within 5 seconds and issues from it (and a new service certificate) without a restart.",
		Subcommands: []*cli.Command{
			{
				Name:      "intermediate",
				Usage:     "sign new certificates with a new intermediate under the same root",
				UsageText: "dockca rotate intermediate [--key-type ec-p256|ec-p384|rsa-3072|ed25519] [--ttl D]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "key-type", Usage: "key `TYPE` of the new intermediate (default: the CA's)"},
					&cli.StringFlag{Name: "ttl", Value: "1825d", Usage: "lifetime `D` of the new intermediate"},
				},
				Action: func(c *cli.Context) error { return runRotate(c, e, "intermediate") },
			},
			{
				Name:      "root",
				Usage:     "make a new root and intermediate; both roots are trusted until 'rotate finish'",
				UsageText: "dockca rotate root [--key-type ec-p256|ec-p384|rsa-3072|ed25519] [--overlap 30d]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "key-type", Usage: "key `TYPE` of the new root and intermediate (default: the CA's)"},
					&cli.StringFlag{Name: "overlap", Value: "30d", Usage: "how long `D` both roots are planned to be trusted (shown by 'rotate status')"},
				},
				Action: func(c *cli.Context) error { return runRotate(c, e, "root") },
			},
			{
				Name:      "status",
				Usage:     "list the certificates that still depend on an old root or intermediate",
				UsageText: "dockca rotate status [--json]",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(c *cli.Context) error {
					if err := argsExactly(c, 0, ""); err != nil {
						return err
					}
					return withAdmin(c, e, false, func(adm admin.Admin) error {
						st, err := adm.RotationStatus(c.Context)
						if err != nil {
							return fmt.Errorf("rotate status: %w", err)
						}
						return writeRotationStatus(c.App.Writer, st, c.Bool("json"))
					})
				},
			},
			{
				Name:      "finish",
				Usage:     "retire the old root once nothing depends on it",
				UsageText: "dockca rotate finish [--force]",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "retire it even though certificates still depend on it (they stop working)"}},
				Action:    func(c *cli.Context) error { return runRotate(c, e, "finish") },
			},
		},
	}
}

// runRotate parses the flags of a changing rotate subcommand, opens the
// database for writing (refused while dockca serve holds it) and runs it.
func runRotate(c *cli.Context, e *env, what string) error {
	cmd := "rotate " + what
	if err := argsExactly(c, 0, ""); err != nil {
		return err
	}
	var o ca.RotateOptions
	if kt := c.String("key-type"); c.IsSet("key-type") {
		k, err := pki.ParseKeyType(kt)
		if err != nil {
			return usagef("%s: %v", cmd, err)
		}
		o.KeyType = k
	}
	for _, f := range []struct {
		name string
		dst  *time.Duration
	}{{"ttl", &o.TTL}, {"overlap", &o.Overlap}} {
		if !c.IsSet(f.name) && c.String(f.name) == "" {
			continue
		}
		d, err := pki.ParseTTL(c.String(f.name))
		if err != nil {
			return usagef("%s: --%s: %v", cmd, f.name, err)
		}
		*f.dst = d
	}
	home, cfg, err := homeAndStore(c, e)
	if err != nil {
		return err
	}
	st, err := openForRotation(c.Context, home, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	defer st.Close()
	w := c.App.Writer
	if what == "finish" {
		stat, err := ca.FinishRotation(c.Context, st, c.Bool("force"), time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "Retired the old root (SHA-256 %s); trusted root: %s\n", strings.Join(stat.OldRoots, ", "), stat.Root)
		if n := countOldRoot(stat.Dependents); n > 0 {
			fmt.Fprintf(w, "Forced: %d certificates under the old root stop working; their holders must enroll again.\n", n)
		}
		fmt.Fprintln(w, "Every ca.pem dockca writes now carries this root only, and certificates under the old one are refused.")
		return nil
	}
	rec, err := st.CA(c.Context)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if rec.Encrypted {
		if o.Password, err = readPassword(c, e, false); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
	}
	if err := rotate(c.Context, st, what, o, w); err != nil {
		return err
	}
	// The stored CRL becomes the new intermediate's at once (the old
	// one's stays available per issuer from the service).
	a, err := ca.Open(c.Context, st, ca.OpenOptions{Password: o.Password, Actor: actor(), CRL: true})
	if err != nil {
		return fmt.Errorf("%s: rotated, but the CRL of the new intermediate was not made (the next revocation or start of the service makes it): %w", cmd, err)
	}
	return a.Close()
}

// rotate runs rotate intermediate or rotate root on an open store and
// says what it made.
func rotate(ctx context.Context, st *store.Store, what string, o ca.RotateOptions, w io.Writer) error {
	if what == "intermediate" {
		res, err := ca.RotateIntermediate(ctx, st, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "New intermediate %q (generation %d, SHA-256 %s), expires %s\n", res.Intermediate.Subject.CommonName,
			res.Generation, pki.Fingerprint(res.Intermediate), res.Intermediate.NotAfter.UTC().Format(time.RFC3339))
		fmt.Fprintln(w, "New certificates are signed by it; the old intermediate's certificates stay valid until they expire.")
		return nil
	}
	res, err := ca.RotateRoot(ctx, st, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "New root %q (generation %d)\nRoot fingerprint (SHA-256): %s\n", res.Root.Subject.CommonName, res.Generation, pki.Fingerprint(res.Root))
	fmt.Fprintf(w, "Overlap until %s: every ca.pem carries both roots. Renew every daemon and context, check 'dockca rotate status', then run 'dockca rotate finish'.\n",
		res.OverlapUntil.UTC().Format(time.RFC3339))
	return nil
}

// openForRotation opens the store for writing; a service running for
// home is refused, since it holds the database's lock. (Replicas on etcd
// keep running and follow the rotation: serve.Server.followRotations.)
func openForRotation(ctx context.Context, home string, cfg store.Config) (*store.Store, error) {
	if !cfg.IsEtcd() && !store.Exists(home) {
		return nil, fmt.Errorf("%w in %s (run 'dockca init', or set --home / DOCKCA_HOME)", admin.ErrNoHome, home)
	}
	if c, err := admin.Dial(home); err == nil {
		c.Close()
		return nil, errors.New("dockca serve is running for this home: stop it, rotate, and start it again (it loads the CA's keys at start)")
	}
	if cfg.IsEtcd() {
		if ok, err := cfg.Exists(ctx); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("%w in %s", admin.ErrNoHome, cfg.URL)
		}
	}
	return store.OpenConfig(ctx, cfg, nil)
}

func writeRotationStatus(w io.Writer, st *ca.RotationStatus, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(w, "Generation %d, root SHA-256 %s\n", st.Generation, st.Root)
	if len(st.OldRoots) > 0 {
		fmt.Fprintf(w, "Old root still trusted: %s", strings.Join(st.OldRoots, ", "))
		if st.OverlapUntil != nil {
			fmt.Fprintf(w, " (overlap planned until %s)", st.OverlapUntil.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
	}
	if len(st.Dependents) == 0 {
		fmt.Fprintln(w, "No valid certificate depends on an earlier generation.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tSERIAL\tNOT AFTER\tGENERATION\tOLD ROOT")
	for _, d := range st.Dependents {
		old := "no"
		if d.OldRoot {
			old = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.Kind, d.Name, d.Serial, d.NotAfter.UTC().Format(time.RFC3339), d.Generation, old)
	}
	return tw.Flush()
}

func countOldRoot(deps []ca.Dependent) int {
	n := 0
	for _, d := range deps {
		if d.OldRoot {
			n++
		}
	}
	return n
}
