package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/daemonsetup"
)

func authzPluginFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Value: "dockca", Usage: "plugin `NAME` dockerd knows it by (authorization-plugins in daemon.json)"},
		&cli.StringFlag{Name: "socket", Usage: "unix socket `PATH` (default /run/docker/plugins/NAME.sock, where dockerd looks)"},
		caURLFlag("remote mode: the dockca service at `URL`; its CRL decides revocation"),
		fingerprintFlag("remote mode: the service's root `SHA256` fingerprint"),
		&cli.StringFlag{Name: "policy", Usage: "YAML `FILE` overriding or adding roles (see authz/builtin-policy.yaml)"},
		&cli.StringFlag{Name: "audit-log", Usage: "append one JSON line per decision to `FILE` (- for standard output)"},
		&cli.DurationFlag{Name: "refresh", Value: 30 * time.Second, Usage: "remote mode: fetch the CRL every `D`"},
		&cli.DurationFlag{Name: "max-stale", Value: 10 * time.Minute, Usage: "deny TLS requests when the revocation list is older than `D`"},
		&cli.BoolFlag{Name: "deny-local", Usage: "also deny requests without a client certificate (the unix socket)"},
	}
}

func newAuthzCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "authz",
		Usage:     "run the Docker authorization plugin that enforces revocation and roles",
		UsageText: "dockca authz [--name dockca] [--socket PATH] [--home DIR | --ca-url URL [--fingerprint SHA256]] [--policy FILE] [--audit-log FILE|-] [--refresh 30s] [--max-stale 10m]",
		Description: "dockerd never checks revocation, and a valid client certificate is root on the host. This plugin, named\n" +
			"in daemon.json's authorization-plugins, sees the client certificate of every API request and denies it\n" +
			"when the certificate does not chain to the dockca root, has expired or is revoked, and otherwise lets the\n" +
			"certificate's role decide: readonly (GET/HEAD, no filesystem reads, attach, exec or secrets), operator\n" +
			"(lifecycle of containers, images, volumes, networks, but no privileged containers, host mounts, host\n" +
			"namespaces, capabilities or devices) or admin (everything). Requests on the unix socket are allowed unless\n" +
			"--deny-local. Local mode (--home, the default) reads revocations from this host's CA database on the next\n" +
			"request after a change; remote mode (--ca-url) fetches the service's CRL every --refresh, verifies it\n" +
			"against the pinned root and caches it under --home, so a restart works while the service is away.\n\n" +
			"If the plugin stops, dockerd refuses every request until it is back: restart it (systemctl restart\n" +
			"dockca-authz). The unix socket of dockerd stays usable only through the plugin too.",
		Flags: authzPluginFlags(),
		Subcommands: []*cli.Command{
			newAuthzInstallCommand(e),
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			o, err := authzOptions(c, e)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stderr, "dockca authz: plugin %q listening on %s\n", o.Name, o.Socket)
			return authz.Serve(c.Context, *o)
		},
	}
}

// authzOptions turns the flags into the plugin's options: the trust anchor
// and the revocation source of the chosen mode, the policy and the audit log.
func authzOptions(c *cli.Context, e *env) (*authz.Options, error) {
	o := &authz.Options{Name: c.String("name"), Socket: c.String("socket"), DenyLocal: c.Bool("deny-local")}
	if o.Socket == "" {
		o.Socket = authz.SocketPath(o.Name)
	}
	if c.Duration("refresh") <= 0 || c.Duration("max-stale") <= 0 {
		return nil, usagef("authz: --refresh and --max-stale must be positive")
	}
	home, err := homeDir(c, e)
	if err != nil {
		return nil, err
	}
	if caURL := c.String("ca-url"); caURL != "" {
		client, err := trustCA(c.Context, e, caURL, c.String("fingerprint"))
		if err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
		issuers, err := client.Issuers(c.Context)
		if err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
		src, err := authz.NewCRLSource(authz.CRLOptions{
			URL: client.URL(), Root: client.Root(), Issuers: issuers,
			CacheDir: filepath.Join(home, "authz-crl", o.Name),
			Refresh:  c.Duration("refresh"), MaxStale: c.Duration("max-stale"),
		})
		if err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
		o.Root, o.Revocations = client.Root(), src
	} else {
		if c.IsSet("fingerprint") {
			return nil, usagef("authz: --fingerprint needs --ca-url")
		}
		src, root, err := authz.NewLocalSource(c.Context, home, c.Duration("max-stale"))
		if err != nil {
			return nil, fmt.Errorf("authz: %w (run where the CA database is, or use --ca-url)", err)
		}
		o.Root, o.Revocations = root, src
	}
	if f := c.String("policy"); f != "" {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
		p, err := authz.LoadPolicy(fh)
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("authz: policy %s: %w", f, err)
		}
		o.Policy = p
	}
	if f := c.String("audit-log"); f != "" {
		a, err := authz.OpenAuditLog(f)
		if err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
		o.Audit = a
	}
	return o, nil
}

func newAuthzInstallCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "install",
		Usage:     "install the plugin as a systemd service and name it in daemon.json",
		UsageText: "dockca authz install [--config /etc/docker/daemon.json] [--systemd-dir /etc/systemd/system] [plugin flags]",
		Description: "Writes dockca-authz.service (ordered before docker.service) running 'dockca authz' with the given plugin\n" +
			"flags, and adds the plugin to \"authorization-plugins\" in daemon.json (merged: other keys kept, previous file\n" +
			"as daemon.json.bak, atomic; nothing changes when it is already there). Then start the unit and send dockerd\n" +
			"SIGHUP: it reloads authorization-plugins without a restart.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", Value: daemonsetup.DefaultConfigPath, Usage: "dockerd's daemon.json `FILE`"},
			&cli.StringFlag{Name: "systemd-dir", Value: authz.DefaultSystemdDir, Usage: "`DIR` for dockca-authz.service"},
		}, authzPluginFlags()...),
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			return runAuthzInstall(c.Context, c, e)
		},
	}
}

func runAuthzInstall(ctx context.Context, c *cli.Context, e *env) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("authz install: %w", err)
	}
	home, err := homeDir(c, e)
	if err != nil {
		return err
	}
	args := []string{"authz", "--name", c.String("name")}
	writable := []string{}
	if u := c.String("ca-url"); u != "" {
		if c.String("fingerprint") == "" {
			return usagef("authz install: remote mode needs --fingerprint (the service cannot ask at boot)")
		}
		args = append(args, "--ca-url", u, "--fingerprint", c.String("fingerprint"), "--refresh", c.Duration("refresh").String())
	}
	args = append([]string{"--home", home}, args...)
	writable = append(writable, home)
	// The unit runs with / as its working directory: every path it names
	// must be absolute.
	for _, f := range []string{"socket", "policy", "audit-log"} {
		v := c.String(f)
		if v == "" || v == "-" {
			if v == "-" {
				args = append(args, "--"+f, v)
			}
			continue
		}
		abs, err := filepath.Abs(v)
		if err != nil {
			return fmt.Errorf("authz install: --%s: %w", f, err)
		}
		args = append(args, "--"+f, abs)
		if f == "audit-log" {
			writable = append(writable, filepath.Dir(abs))
		}
	}
	args = append(args, "--max-stale", c.Duration("max-stale").String())
	if c.Bool("deny-local") {
		args = append(args, "--deny-local")
	}
	w := c.App.Writer
	if _, err := authz.InstallUnit(ctx, authz.InstallOptions{SystemdDir: c.String("systemd-dir"),
		Unit: authz.UnitOptions{Exec: exe, Args: args, WritablePaths: writable}}, w); err != nil {
		return fmt.Errorf("authz install: %w", err)
	}
	changed, changes, err := daemonsetup.MergeDaemonConfig(c.String("config"), daemonsetup.AddAuthorizationPlugin(c.String("name")), false)
	if err != nil {
		return fmt.Errorf("authz install: %w", err)
	}
	if !changed {
		fmt.Fprintf(w, "%s already lists authorization plugin %q\n", c.String("config"), c.String("name"))
		return nil
	}
	for _, ch := range changes {
		fmt.Fprintf(w, "%s: %s\n", c.String("config"), ch)
	}
	fmt.Fprintln(w, authz.ReloadHint(c.String("name")))
	return nil
}
