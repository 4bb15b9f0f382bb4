package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
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
			"While 'dockca serve' runs for the home, the rotation goes through its admin socket and the service\n" +
			"issues from the new generation (and presents a service certificate from it) before the command returns.\n" +
			"With an etcd store, rotate from any host while the replicas run: the others notice the new generation\n" +
			"within 5 seconds and switch to it without a restart.",
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

// runRotate parses the flags of a changing rotate subcommand and runs it
// on the CA: through the admin socket while dockca serve runs for the home
// (the service switches to the new generation before it answers), else on
// the database.
func runRotate(c *cli.Context, e *env, what string) error {
	cmd := "rotate " + what
	if err := argsExactly(c, 0, ""); err != nil {
		return err
	}
	req := api.AdminRotateRequest{What: what, Force: c.Bool("force")}
	if kt := c.String("key-type"); c.IsSet("key-type") {
		k, err := pki.ParseKeyType(kt)
		if err != nil {
			return usagef("%s: %v", cmd, err)
		}
		req.KeyType = string(k)
	}
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"ttl", &req.TTL}, {"overlap", &req.Overlap}} {
		if !c.IsSet(f.name) && c.String(f.name) == "" {
			continue
		}
		d, err := pki.ParseTTL(c.String(f.name))
		if err != nil {
			return usagef("%s: --%s: %v", cmd, f.name, err)
		}
		*f.dst = int64(d / time.Second)
	}
	return withAdmin(c, e, true, func(adm admin.Admin) error {
		res, err := adm.Rotate(c.Context, req)
		if err != nil {
			return err
		}
		writeRotated(c.App.Writer, res)
		if res.Warning != "" {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", res.Warning)
		}
		return nil
	})
}

// writeRotated says what a rotation made.
func writeRotated(w io.Writer, res *api.AdminRotateResponse) {
	switch res.What {
	case "finish":
		fmt.Fprintf(w, "Retired the old root (SHA-256 %s); trusted root: %s\n", strings.Join(res.OldRoots, ", "), res.Root)
		if res.Forced > 0 {
			fmt.Fprintf(w, "Forced: %d certificates under the old root stop working; their holders must enroll again.\n", res.Forced)
		}
		fmt.Fprintln(w, "Every ca.pem dockca writes now carries this root only, and certificates under the old one are refused.")
	case "intermediate":
		fmt.Fprintf(w, "New intermediate %q (generation %d, SHA-256 %s), expires %s\n", res.Subject,
			res.Generation, res.SHA256, res.NotAfter.UTC().Format(time.RFC3339))
		fmt.Fprintln(w, "New certificates are signed by it; the old intermediate's certificates stay valid until they expire.")
	default:
		fmt.Fprintf(w, "New root %q (generation %d)\nRoot fingerprint (SHA-256): %s\n", res.Subject, res.Generation, res.SHA256)
		until := time.Time{}
		if res.OverlapUntil != nil {
			until = *res.OverlapUntil
		}
		fmt.Fprintf(w, "Overlap until %s: every ca.pem carries both roots. Renew every daemon and context, check 'dockca rotate status', then run 'dockca rotate finish'.\n",
			until.UTC().Format(time.RFC3339))
	}
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
	fmt.Fprintln(tw, "KIND\tNAME\tSERIAL\tNOT AFTER\tGENERATION\tOLD ROOT\tHELD BY")
	for _, d := range st.Dependents {
		old, holder := "no", d.Holder
		if d.OldRoot {
			old = "yes"
		}
		if holder == "" {
			holder = "-" // issued before dockca recorded it, or by a path that does not say
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Kind, d.Name, d.Serial, d.NotAfter.UTC().Format(time.RFC3339), d.Generation, old, holder)
	}
	return tw.Flush()
}
