package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/serve"
	"github.com/dockca/dockca/store"
)

func newServeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "run the CA as an HTTPS service: one-time-token enrollment, renewal, revocation, CRL",
		UsageText: "dockca serve [--listen 127.0.0.1:8443] [--address https://ca.example:8443] [--no-password]",
		Description: "Unlocks the CA keys once (password from --password-file, DOCKCA_PASSWORD_FILE, DOCKCA_PASSWORD or a\n" +
			"prompt) and serves the API under /v1 over HTTPS with a certificate issued for the names in --address\n" +
			"and --listen. On first start in an empty home the CA is initialised (the password is required unless\n" +
			"--no-password, which stores the keys UNENCRYPTED, for development only).\n\n" +
			"While it runs, the service holds dockca.db exclusively: every command that needs the CA (issue, sign,\n" +
			"ls, show, revoke, crl, backup, token, check, policy) then goes through its admin socket\n" +
			"<home>/serve.sock (owner only). It binds its port and socket before it writes anything, so a start\n" +
			"that fails changes nothing. SIGTERM or SIGINT stops it after in-flight requests finish.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: serve.DefaultListen, EnvVars: []string{"DOCKCA_LISTEN"}, Usage: "`HOST:PORT` to listen on"},
			&cli.StringFlag{Name: "address", EnvVars: []string{"DOCKCA_ADDRESS"}, Usage: "the `URL` clients reach the service at (default https://<listen>)"},
			&cli.StringFlag{Name: "cert-ttl", Value: "7d", Usage: "lifetime `D` of the service's own certificate (renewed at two thirds)"},
			&cli.Float64Flag{Name: "sign-rate", Value: serve.DefaultSignRate, Usage: "signing requests per second allowed per client IP (`N`)"},
			&cli.IntFlag{Name: "sign-burst", Value: serve.DefaultSignBurst, Usage: "burst `N` of signing requests per client IP"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log `FORMAT`: text or json (on stderr)"},
			&cli.BoolFlag{Name: "no-password", Usage: "on first start, store the CA keys UNENCRYPTED (development only)"},
			&cli.StringFlag{Name: "debug-pprof", Usage: "serve Go profiles (/debug/pprof) on loopback `HOST:PORT`, e.g. 127.0.0.1:6060"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			certTTL, err := pki.ParseTTL(c.String("cert-ttl"))
			if err != nil {
				return usagef("serve: --cert-ttl: %v", err)
			}
			var h slog.Handler
			switch c.String("log-format") {
			case "text":
				h = slog.NewTextHandler(e.Stderr, nil)
			case "json":
				h = slog.NewJSONHandler(e.Stderr, nil)
			default:
				return usagef("serve: --log-format must be text or json")
			}
			o := serve.Options{Listen: c.String("listen"), Address: c.String("address"), CertTTL: certTTL,
				SignRate: c.Float64("sign-rate"), SignBurst: c.Int("sign-burst"), Logger: slog.New(h), DebugPprof: c.String("debug-pprof")}
			if _, _, err := serve.Names(o); err != nil {
				return usagef("serve: %v", err)
			}
			if o.DebugPprof != "" {
				if err := serve.CheckDebugPprof(o.DebugPprof); err != nil {
					return usagef("serve: --debug-pprof: %v", err)
				}
			}
			return runServe(c, e, o)
		},
	}
}

func runServe(c *cli.Context, e *env, o serve.Options) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serve.GCPercent)
	}
	home, cfg, err := homeAndStore(c, e)
	if err != nil {
		return err
	}
	o.Home = home
	var pw []byte
	exists := store.Exists(home)
	if cfg.IsEtcd() {
		if exists, err = cfg.Exists(c.Context); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	if !exists {
		if pw, err = firstStartInit(c, e, home, cfg); err != nil {
			return err
		}
	}
	// With an etcd store the home holds only this replica's local files
	// (the admin socket, its service certificate): make it if need be.
	if err := atomicfile.MkdirPrivate(home); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	st, err := store.OpenConfig(c.Context, cfg, nil)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("serve: %w (is dockca serve already running for %s?)", err, home)
	}
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer st.Close()
	rec, err := st.CA(c.Context)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if rec.Encrypted && pw == nil {
		if pw, err = readPassword(c, e, false); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	srv, err := serve.New(c.Context, st, pw, o)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "dockca serve: certificate authority %q\n", rec.Name)
	fmt.Fprintf(w, "  URL:              %s\n", srv.URL())
	fmt.Fprintf(w, "  Root fingerprint: %s\n", srv.RootFingerprint())
	fmt.Fprintf(w, "  Admin socket:     %s\n", srv.AdminSocket())
	homeFlag := ""
	if c.IsSet("home") {
		homeFlag = " --home " + home
	}
	fmt.Fprintf(w, "Mint a one-time token:  %s%s token create --kind client NAME   (or --kind daemon --san IP HOST)\n", e.Self, homeFlag)
	return srv.Serve(c.Context)
}

// firstStartInit initialises the CA in an empty home so the service's
// first command is the only one needed; it returns the password so it is
// asked only once.
func firstStartInit(c *cli.Context, e *env, home string, cfg store.Config) ([]byte, error) {
	_, pw, err := initHome(c, e, home, cfg, ca.InitOptions{}, c.Bool("no-password"))
	if cfg.IsEtcd() && (errors.Is(err, store.ErrNotEmpty) || errors.Is(err, store.ErrCopyInProgress) ||
		errors.Is(err, store.ErrCAExists) || errors.Is(err, store.ErrCopyRaced)) {
		// Another replica is initialising the store, or has: use its CA
		// once its copy is complete.
		return pw, waitForCA(c.Context, cfg, time.Minute)
	}
	if err != nil {
		return nil, fmt.Errorf("serve: first start in %s: %w", home, err)
	}
	return pw, nil
}

// waitForCA waits until the store holds a whole CA (another replica's
// first start copying it in).
func waitForCA(ctx context.Context, cfg store.Config, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cfg.Exists(ctx)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("serve: another replica began initialising %s and did not finish within %s", cfg.URL, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
