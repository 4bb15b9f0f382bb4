package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/daemonsetup"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/pki"
)

func newRenewCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "renew",
		Usage:     "renew a certificate directory against dockca serve over mutual TLS",
		UsageText: "dockca renew --cert-dir DIR [--watch] [--exec CMD] [--rekey] [--within D] [--force] [--revoke-old] [--ca-url URL[,URL...]] [--daemon-config FILE]",
		Description: "Without --watch, renews now if the certificate is due (in the last third of its lifetime, or expiring\n" +
			"within --within D; --force renews regardless). With --watch, first checks that it can renew (DIR\n" +
			"records a CA URL, the service presents the pinned root, the certificate is not revoked or expired:\n" +
			"otherwise it fails at once; an unreachable service is only a warning), then keeps renewing at two\n" +
			"thirds of each certificate's lifetime (with jitter), retrying with backoff while the CA is unreachable,\n" +
			"until stopped; it exits with an error only when renewal cannot succeed any more (enroll again).\n" +
			"--revoke-old revokes each replaced certificate (reason superseded).\n" +
			"--exec runs CMD with /bin/sh after each renewal (e.g. 'systemctl restart docker'); for a daemon's\n" +
			"certificate it first checks --daemon-config for live-restore and warns when it is off (the restart\n" +
			"would stop every container; 'dockca daemon setup --live-restore' sets it). DIR is what\n" +
			"'dockca enroll' wrote: ca.pem with cert.pem/key.pem or server-cert.pem/server-key.pem.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cert-dir", Required: true, EnvVars: []string{"DOCKCA_CERT_DIR"}, Usage: "certificate `DIR`"},
			&cli.BoolFlag{Name: "watch", Usage: "keep the certificate fresh until stopped"},
			&cli.StringFlag{Name: "exec", Usage: "shell `CMD` to run after each renewal"},
			&cli.BoolFlag{Name: "rekey", Usage: "generate a new key with each renewal"},
			caURLFlag("the service `URL` (comma-separated replicas, tried in turn; default: recorded in DIR)"),
			&cli.StringFlag{Name: "within", Usage: "due when expiring within `D` (default: the last third of the lifetime)"},
			&cli.BoolFlag{Name: "force", Usage: "renew even if not due"},
			&cli.BoolFlag{Name: "revoke-old", Usage: "revoke each replaced certificate (reason superseded)"},
			&cli.StringFlag{Name: "daemon-config", Value: daemonsetup.DefaultConfigPath, Usage: "dockerd's daemon.json `FILE`, checked for live-restore before --exec restarts a daemon"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			var within time.Duration
			if c.IsSet("within") {
				var err error
				if within, err = pki.ParseTTL(c.String("within")); err != nil || within <= 0 {
					return usagef("renew: --within: %q is not a positive duration", c.String("within"))
				}
			}
			urls, err := caURLs(c)
			if err != nil {
				return err
			}
			dir, err := filepath.Abs(c.String("cert-dir"))
			if err != nil {
				return err
			}
			o := enroll.WatchOptions{Dir: dir, CAURLs: urls, Exec: c.String("exec"), Rekey: c.Bool("rekey"),
				Within: within, Force: c.Bool("force"), RevokeOld: c.Bool("revoke-old"),
				Logger: slog.New(slog.NewTextHandler(e.Stderr, nil)), Stdout: e.Stdout, Stderr: e.Stderr}
			if o.Exec != "" && isDaemonDir(dir) {
				// dockerd reads its TLS files only at start: the restart
				// --exec runs stops every container unless live-restore
				// is on. Said at start and before each restart.
				cfg := c.String("daemon-config")
				warn := func() {
					if msg := daemonsetup.LiveRestoreWarning(cfg); msg != "" {
						o.Logger.Warn(msg)
					}
				}
				warn()
				o.BeforeExec = warn
			}
			if c.Bool("watch") {
				return enroll.Watch(c.Context, o)
			}
			res, err := enroll.RenewDir(c.Context, o)
			var nd *enroll.NotDueError
			if errors.As(err, &nd) {
				fmt.Fprintf(c.App.Writer, "Not renewed: %v (--force renews now)\n", nd)
				return nil
			}
			if err != nil && res != nil {
				fmt.Fprintf(c.App.Writer, "Renewed %s %s: serial %s, valid until %s\n", res.Resp.Kind, res.Resp.Name, res.Resp.Serial, res.Leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "Renewed %s %s: serial %s, valid until %s\n", res.Resp.Kind, res.Resp.Name, res.Resp.Serial, res.Leaf.NotAfter.UTC().Format(time.RFC3339))
			if o.RevokeOld {
				fmt.Fprintln(c.App.Writer, "The old certificate was revoked (superseded).")
			}
			return nil
		},
	}
}

// isDaemonDir reports a certificate directory holding a daemon's
// certificate (server-cert.pem), the layout dockerd reads.
func isDaemonDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, pki.FileServerCert))
	return err == nil
}

func newEnrollCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "enroll",
		Usage:     "get a certificate from dockca serve with a one-time token, into a directory",
		UsageText: "dockca enroll --ca-url URL[,URL...] --token T [--fingerprint SHA256] --cert-dir DIR [--key-type T]",
		Description: "Generates the key here (it never leaves this machine), checks the CA's root against --fingerprint\n" +
			"(without it, shows the fingerprint and asks on a terminal; refuses otherwise), sends a CSR with the\n" +
			"token's names and writes ca.pem plus cert.pem/key.pem (client) or server-cert.pem/server-key.pem\n" +
			"(daemon) and dockca-enroll.json into DIR, ready for 'dockca renew --cert-dir DIR'. No dockca.db\n" +
			"is created.",
		Flags: []cli.Flag{
			required(caURLFlag("the service `URL` (comma-separated replicas, tried in turn)")),
			required(tokenFlag("one-time `TOKEN` from 'dockca token create'")),
			fingerprintFlag("the root's `SHA256` fingerprint"),
			&cli.StringFlag{Name: "cert-dir", Required: true, Usage: "`DIR` to write into"},
			&cli.StringFlag{Name: "key-type", Value: string(pki.KeyECP256), Usage: "key `TYPE`: ec-p256, ec-p384, rsa-3072 or ed25519"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			kt, err := pki.ParseKeyType(c.String("key-type"))
			if err != nil {
				return usagef("enroll: %v", err)
			}
			urls, err := caURLs(c)
			if err != nil {
				return err
			}
			dir, err := filepath.Abs(c.String("cert-dir"))
			if err != nil {
				return err
			}
			cl, err := trustCA(c.Context, e, urls, c.String("fingerprint"))
			if err != nil {
				return fmt.Errorf("enroll: %w", err)
			}
			cl.Holder = pki.HolderHere(dir)
			res, err := cl.Enroll(c.Context, c.String("token"), kt)
			if err != nil {
				return fmt.Errorf("enroll: %w", err)
			}
			if err := enroll.WriteDir(dir, cl, res); err != nil {
				return fmt.Errorf("enroll: %w", err)
			}
			fmt.Fprintf(c.App.Writer, "Enrolled %s %s: serial %s, valid until %s, written to %s\n",
				res.Resp.Kind, res.Resp.Name, res.Resp.Serial, res.Leaf.NotAfter.UTC().Format(time.RFC3339), dir)
			return nil
		},
	}
}

// trustCA bootstraps trust in the service at caURLs: by fingerprint when
// given, else by showing the root's fingerprint and asking on a terminal.
// Without a terminal and without a fingerprint it fails: trust is never
// assumed. (For remote 'context add' and 'daemon setup' too.)
func trustCA(ctx context.Context, e *env, caURLs []string, fingerprint string) (*enroll.Client, error) {
	if fingerprint != "" {
		return enroll.Bootstrap(ctx, caURLs, fingerprint)
	}
	if !e.IsTerminal() {
		return nil, errors.New("no --fingerprint given and no terminal to confirm the CA's root fingerprint on")
	}
	root, err := enroll.FetchRoot(ctx, caURLs)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(e.Stderr, "The CA at %s presents the root %q\nwith SHA-256 fingerprint %s\nTrust it? [y/N] ",
		strings.Join(caURLs, ", "), root.Subject.CommonName, pki.Fingerprint(root))
	line, _ := bufio.NewReader(e.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return nil, errors.New("the CA's root was not confirmed")
	}
	return enroll.New(caURLs, root)
}
