package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/daemonsetup"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/caurl"
	"github.com/dockca/dockca/store"
)

// engineFlags are the policy engine's flags, shared by the plugin and the
// gate: where revocations come from, the policy and the audit log.
func engineFlags() []cli.Flag {
	return []cli.Flag{
		caURLFlag("remote mode: the dockca service at `URL` (comma-separated replicas, tried in turn); its CRL decides revocation"),
		fingerprintFlag("remote mode: the service's root `SHA256` fingerprint"),
		&cli.StringFlag{Name: "policy", Usage: "YAML `FILE` overriding or adding roles (see authz/builtin-policy.yaml)"},
		&cli.StringFlag{Name: "audit-log", Usage: "append one JSON line per decision to `FILE` (- for standard output)"},
		&cli.DurationFlag{Name: "refresh", Value: 30 * time.Second, Usage: "remote mode: fetch the CRL every `D`"},
		&cli.DurationFlag{Name: "max-stale", Value: 10 * time.Minute, Usage: "deny TLS requests when the revocation list is older than `D`"},
		&cli.StringSliceFlag{Name: "group", Usage: "a `GROUP` this daemon belongs to (repeatable): clients whose scope includes none of its groups are denied"},
	}
}

func authzPluginFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "name", Value: "dockca", Usage: "plugin `NAME` dockerd knows it by (authorization-plugins in daemon.json)"},
		&cli.StringFlag{Name: "socket", Usage: "unix socket `PATH` (default /run/docker/plugins/NAME.sock, where dockerd looks)"},
		&cli.BoolFlag{Name: "deny-local", Usage: "also deny requests without a client certificate (the unix socket)"},
		&cli.StringFlag{Name: "docker-socket", Value: authz.DefaultDockerSocket, Usage: "dockerd's unix socket `PATH`, where the plugin looks up the containers, exec instances and volumes a request acts on"},
	}, engineFlags()...)
}

func newAuthzCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "authz",
		Usage:     "run the Docker authorization plugin that enforces revocation and roles",
		UsageText: "dockca authz [--name dockca] [--socket PATH] [--home DIR | --ca-url URL[,URL...] [--fingerprint SHA256]] [--policy FILE] [--audit-log FILE|-] [--refresh 30s] [--max-stale 10m] [--docker-socket /var/run/docker.sock] [--deny-local] [--group G]...",
		Description: "dockerd never checks revocation, and a valid client certificate is root on the host. This plugin, named\n" +
			"in daemon.json's authorization-plugins, sees the client certificate of every API request and denies it\n" +
			"when the certificate does not chain to the dockca root, has expired or is revoked, and otherwise lets the\n" +
			"certificate's role decide: readonly (GET/HEAD, no filesystem reads, attach, exec or secrets), operator\n" +
			"(lifecycle of containers, images, volumes, networks, but no privileged containers, host mounts, host\n" +
			"namespaces, capabilities or devices) or admin (everything). Actions on existing containers (exec, attach,\n" +
			"start, …) are judged by how the container was created, looked up on --docker-socket. For every role but\n" +
			"admin, a request body that dockerd would read but did not show the plugin is denied. Requests on the unix\n" +
			"socket are allowed unless --deny-local. Local mode (--home, the default) reads revocations from this host's\n" +
			"CA database on the next request after a change, or, while dockca serve holds it, the service's CRL over\n" +
			"its admin socket; remote mode (--ca-url) fetches the service's CRL every --refresh, verifies it against the\n" +
			"pinned root and caches it under --home, so a restart works while the service is away. A warning is logged\n" +
			"when the revocation data is stale; past --max-stale, TLS requests are denied.\n\n" +
			"If the plugin stops, every docker call hangs about 30 s (dockerd retries) and then fails: restart it\n" +
			"(systemctl restart dockca-authz; the unit from 'authz install' does so at once). 'dockca authz status' says\n" +
			"whether it answers.\n\n" +
			"With --group (repeatable) the daemon belongs to those groups: a client certificate whose scope\n" +
			"(URI SANs urn:dockca:scope:G, from 'issue client --scope') names none of them is denied before any role\n" +
			"rule, and the stored policy's group_roles may narrow a role on them. Unscoped certificates reach it.",
		Flags: authzPluginFlags(),
		Subcommands: []*cli.Command{
			newAuthzInstallCommand(e),
			newAuthzStatusCommand(e),
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

// authzOptions turns the flags into the plugin's options.
func authzOptions(c *cli.Context, e *env) (*authz.Options, error) {
	o, err := engineOptions(c, e, "authz", c.String("name"), authz.NewDockerSocket(c.String("docker-socket")))
	if err != nil {
		return nil, err
	}
	o.Name, o.Socket, o.DenyLocal = c.String("name"), c.String("socket"), c.Bool("deny-local")
	if o.Socket == "" {
		o.Socket = authz.SocketPath(o.Name)
	}
	return o, nil
}

// engineOptions turns engineFlags into the policy engine's options: the
// trust anchor and the revocation source of the chosen mode, the policy and
// the audit log. cmd prefixes errors; cacheName keeps each instance's CRL
// cache apart under the home.
func engineOptions(c *cli.Context, e *env, cmd, cacheName string, containers authz.ContainerLookup) (*authz.Options, error) {
	groups, err := groupsFlag(c, "group")
	if err != nil {
		return nil, err
	}
	o := &authz.Options{Containers: containers, Groups: groups}
	log := slog.New(slog.NewTextHandler(e.Stderr, nil))
	if c.Duration("refresh") <= 0 || c.Duration("max-stale") <= 0 {
		return nil, usagef("%s: --refresh and --max-stale must be positive", cmd)
	}
	home, cfg, err := homeAndStore(c, e)
	if err != nil {
		return nil, err
	}
	urls, err := caURLs(c)
	if err != nil {
		return nil, err
	}
	if cfg.IsEtcd() && urls == nil {
		// Local mode follows the database of this host, and the service
		// on its admin socket; an etcd-backed CA is reached through its
		// replicas.
		return nil, usagef("%s: with an etcd store, give the replicas' URLs as --ca-url (local mode reads the bbolt database of --home)", cmd)
	}
	var service *enroll.Client // remote mode
	if urls != nil {
		client, err := trustCA(c.Context, e, urls, c.String("fingerprint"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		service = client
		issuers, err := client.Issuers(c.Context)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		src, err := authz.NewCRLSource(authz.CRLOptions{
			URLs: client.URLs(), Failover: client.Failover, Root: client.Root(), OtherRoots: client.Roots()[1:], Issuers: issuers,
			CacheDir: filepath.Join(home, cmd+"-crl", cacheName),
			Refresh:  c.Duration("refresh"), MaxStale: c.Duration("max-stale"), Log: log,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		// One fetch before serving, so that the first requests and
		// `authz status` see a current list (or the cached one and a
		// warning when the service is away).
		fetchCtx, cancel := context.WithTimeout(c.Context, 5*time.Second)
		_ = src.Refresh(fetchCtx)
		cancel()
		// The service's trust bundle is read with its CRL: a CA rotation
		// reaches the plugin and the gate without a restart.
		o.Root, o.Revocations, o.Trust = client.Root(), src, src
	} else {
		if c.IsSet("fingerprint") {
			return nil, usagef("%s: --fingerprint needs --ca-url", cmd)
		}
		src, root, err := authz.NewLocalSource(c.Context, authz.LocalOptions{Home: home, DB: admin.LocalDB(home), MaxStale: c.Duration("max-stale"), Log: log})
		if err != nil {
			return nil, fmt.Errorf("%s: %w (run where the CA database is, or use --ca-url)", cmd, err)
		}
		// The home's trust is read with its revocations: a rotation of
		// the CA reaches the plugin and the gate without a restart.
		o.Root, o.Revocations, o.Trust = root, src, src
	}
	o.Log = log
	if f := c.String("policy"); f != "" {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		p, err := authz.LoadPolicy(fh)
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: policy %s: %w", cmd, f, err)
		}
		o.Policy, o.PolicySource = p, f
	} else {
		// The CA owns the policy: its stored one, read again every
		// --refresh, so that `dockca policy set` reaches every plugin and
		// gate. Unreadable at start is an error: the built-in roles could
		// be wider than the stored ones.
		o.PolicyReload, o.PolicyEvery = storedPolicy(home, service), c.Duration("refresh")
		p, source, err := o.PolicyReload(c.Context)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		o.Policy, o.PolicySource = p, source
	}
	if f := c.String("audit-log"); f != "" {
		a, err := authz.OpenAuditLog(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
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
	urls, err := caURLs(c)
	if err != nil {
		return err
	}
	if urls != nil {
		if c.String("fingerprint") == "" {
			return usagef("authz install: remote mode needs --fingerprint (the service cannot ask at boot)")
		}
		args = append(args, "--ca-url", caurl.Format(urls), "--fingerprint", c.String("fingerprint"), "--refresh", c.Duration("refresh").String())
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
	if ds := c.String("docker-socket"); ds != authz.DefaultDockerSocket {
		abs, err := filepath.Abs(ds)
		if err != nil {
			return fmt.Errorf("authz install: --docker-socket: %w", err)
		}
		args = append(args, "--docker-socket", abs)
	}
	if c.Bool("deny-local") {
		args = append(args, "--deny-local")
	}
	groups, err := groupsFlag(c, "group")
	if err != nil {
		return err
	}
	for _, g := range groups {
		args = append(args, "--group", g)
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

func newAuthzStatusCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "say whether the authorization plugin answers and how current its revocation data is",
		UsageText: "dockca authz status [--name dockca] [--socket PATH] [--json]",
		Description: "Asks the running plugin, on its socket, for its mode (local or remote), where its revocation data comes\n" +
			"from and how old it is, the roles of the policy in force and the time of its last decision. Exit status 1\n" +
			"when the plugin does not answer or its revocation data is stale (then it is denying TLS requests, or soon\n" +
			"will: see --max-stale).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Value: "dockca", Usage: "plugin `NAME`"},
			&cli.StringFlag{Name: "socket", Usage: "the plugin's socket `PATH` (default /run/docker/plugins/NAME.sock)"},
			&cli.BoolFlag{Name: "json", Usage: "print the status as JSON"},
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			sock := c.String("socket")
			if sock == "" {
				sock = authz.SocketPath(c.String("name"))
			}
			return runAuthzStatus(c.Context, sock, c.Bool("json"), e.Stdout)
		},
	}
}

// runAuthzStatus prints the plugin's status; a stale or silent plugin is
// an error (exit 1).
func runAuthzStatus(ctx context.Context, socket string, asJSON bool, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := authz.FetchStatus(ctx, socket)
	if err != nil {
		return fmt.Errorf("authz status: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else {
		st.WriteText(w, socket, time.Now())
	}
	if st.Stale {
		why := st.Revocation.Error
		if why == "" {
			why = fmt.Sprintf("last confirmed %s ago, more than max-stale %s", time.Duration(st.RevocationAge*float64(time.Second)).Round(time.Second), st.Revocation.MaxStale)
		}
		return fmt.Errorf("authz status: the plugin's revocation data is stale: %s", why)
	}
	return nil
}

// storedPolicy reads the CA's stored policy: from the service's GET
// /v1/policy with --ca-url, else from the home (through dockca serve's
// admin socket while it runs). None stored means the built-in roles.
func storedPolicy(home string, client *enroll.Client) func(context.Context) (*authz.Policy, string, error) {
	return func(ctx context.Context) (*authz.Policy, string, error) {
		var yaml []byte
		from := ""
		if client != nil {
			var err error
			if yaml, err = client.Policy(ctx); err != nil {
				return nil, "", err
			}
			urls := client.URLs()
			for i := range urls {
				urls[i] += api.PathPolicy
			}
			from = strings.Join(urls, ", ")
		} else {
			adm, err := admin.Open(ctx, home, admin.OpenOptions{})
			if err != nil {
				return nil, "", fmt.Errorf("read the CA's stored policy: %w", err)
			}
			defer adm.Close()
			sp, err := adm.Policy(ctx)
			switch {
			case errors.Is(err, store.ErrNoPolicy):
			case err != nil:
				return nil, "", fmt.Errorf("read the CA's stored policy: %w", err)
			default:
				yaml = sp.YAML
			}
			from = "the CA in " + home
		}
		if yaml == nil {
			return nil, "", nil // built-in roles
		}
		p, err := authz.LoadPolicy(bytes.NewReader(yaml))
		if err != nil {
			return nil, "", fmt.Errorf("the CA's stored policy: %w", err)
		}
		sum := sha256.Sum256(yaml)
		return p, fmt.Sprintf("stored by the CA (dockca policy set, sha256 %x), from %s", sum[:6], from), nil
	}
}
