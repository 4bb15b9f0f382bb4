package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/daemonsetup"
	"github.com/dockca/dockca/gate"
	"github.com/dockca/dockca/pki"
)

func newDaemonCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "set up dockerd for mutual TLS (for provisioning scripts)",
		Subcommands: []*cli.Command{
			{
				Name:      "setup",
				Usage:     "issue the daemon certificate and configure dockerd to require dockca client certificates",
				UsageText: "dockca daemon setup HOST [--san DNS-or-IP]... [--group G]... [--listen tcp://0.0.0.0:2376]... [--tls-dir /etc/docker/tls] [--config /etc/docker/daemon.json] [--systemd-dir /etc/systemd/system/docker.service.d] [--live-restore] [--dry-run]",
				Description: "Writes ca.pem, server-cert.pem and server-key.pem (0600) into --tls-dir (0700); merges tlsverify,\n" +
					"tlscacert, tlscert, tlskey and hosts (existing hosts plus each --listen; the local unix socket is kept)\n" +
					"into daemon.json, keeping every other key and the previous file as daemon.json.bak; and writes the\n" +
					"systemd drop-in dockca.conf that clears the stock unit's '-H fd://' (dockerd refuses hosts given both\n" +
					"as a flag and in daemon.json). A certificate already in place is kept while it is valid for HOST and\n" +
					"the SANs and has more than a third of its lifetime left, so a second run changes nothing.\n" +
					"dockerd must be restarted afterwards: it does not reload TLS material on SIGHUP.\n" +
					"Each --group puts the daemon in a group: its certificate carries it, and with --gate the gate's unit\n" +
					"enforces it (dockca gate --group), so clients scoped elsewhere are denied.",
				Flags: append([]cli.Flag{
					&cli.StringSliceFlag{Name: "san", Usage: "an extra DNS name or IP `ADDRESS` for the certificate (repeatable)"},
					groupFlag(),
					&cli.StringSliceFlag{Name: "listen", Usage: "a `URL` for dockerd to listen on (repeatable; default " + daemonsetup.DefaultListen + ")"},
					&cli.StringFlag{Name: "tls-dir", Value: daemonsetup.DefaultTLSDir, Usage: "`DIR` for the TLS files"},
					&cli.StringFlag{Name: "config", Value: daemonsetup.DefaultConfigPath, Usage: "dockerd's daemon.json `FILE`"},
					&cli.StringFlag{Name: "systemd-dir", Value: daemonsetup.DefaultSystemdDir, Usage: "docker.service drop-in `DIR`"},
					&cli.StringFlag{Name: "ttl", Usage: "certificate lifetime `D` (default 90d, at most 365d)"},
					&cli.BoolFlag{Name: "dry-run", Usage: "print what would change and write nothing"},
					&cli.BoolFlag{Name: "live-restore", Usage: "set \"live-restore\": true in daemon.json, so that restarting dockerd for a renewed certificate keeps containers running"},
					&cli.BoolFlag{Name: "gate", Usage: "put 'dockca gate' in front of dockerd: dockerd keeps only its unix socket, and the gate's unit serves --listen over mutual TLS"},
					&cli.StringFlag{Name: "gate-systemd-dir", Value: authz.DefaultSystemdDir, Usage: "`DIR` for dockca-gate.service (with --gate)"},
				}, remoteFlags("dockca token create --kind daemon HOST")...),
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
					o := daemonsetup.SetupOptions{
						Host: c.Args().First(), SANs: c.StringSlice("san"), Listen: c.StringSlice("listen"),
						TLSDir: c.String("tls-dir"), ConfigPath: c.String("config"), SystemdDir: c.String("systemd-dir"),
						TTL: ttl, DryRun: c.Bool("dry-run"), LiveRestore: c.Bool("live-restore"),
					}
					r, err := remoteFromFlags(c, e, pki.KindDaemon)
					if err != nil {
						return fmt.Errorf("daemon setup %s: %w", o.Host, err)
					}
					if r != nil && c.IsSet("group") && !slices.Equal(groups, r.claims.Dockca.Groups) {
						return fmt.Errorf("daemon setup %s: the token is for groups %q, not %q", o.Host, strings.Join(r.claims.Dockca.Groups, ","), strings.Join(groups, ","))
					}
					if r != nil {
						groups = r.claims.Dockca.Groups
						r.holder = pki.HolderHere("dockerd's TLS files in " + o.TLSDir)
					}
					o.Groups = groups
					if c.Bool("gate") {
						if err := gateUnitFor(c, e, r, &o, groups); err != nil {
							return fmt.Errorf("daemon setup %s: %w", o.Host, err)
						}
					}
					if r != nil {
						if r.claims.Subject != o.Host {
							return fmt.Errorf("daemon setup %s: the token is for host %q", o.Host, r.claims.Subject)
						}
						_, err = daemonsetup.Setup(c.Context, o, r, c.App.Writer)
						return err
					}
					l := newLocalCA(c, e)
					l.groups = groups
					defer l.Close()
					_, err = daemonsetup.Setup(c.Context, o, l, c.App.Writer)
					return err
				},
			},
		},
	}
}

// gateUnitFor renders dockca-gate.service for daemon setup --gate: the gate
// listens where dockerd would have, reads this TLS directory, and takes
// revocations from the local home or from the service the token came from.
func gateUnitFor(c *cli.Context, e *env, r *remoteCA, o *daemonsetup.SetupOptions, groups []string) error {
	listen := daemonsetup.DefaultListen
	if l := c.StringSlice("listen"); len(l) == 1 {
		listen = l[0]
	} else if len(l) > 1 {
		return usagef("--gate takes one --listen (the gate's address)")
	}
	norm, err := daemonsetup.ParseListen(listen)
	if err != nil {
		return err
	}
	addr, ok := strings.CutPrefix(norm, "tcp://")
	if !ok {
		return usagef("--gate needs a tcp:// --listen for the gate, not %q", listen)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	home, err := homeDir(c, e)
	if err != nil {
		return err
	}
	tlsDir, err := filepath.Abs(c.String("tls-dir"))
	if err != nil {
		return err
	}
	args := []string{"--home", home, "gate", "--listen", addr, "--docker", "unix://" + authz.DefaultDockerSocket, "--cert-dir", tlsDir}
	for _, g := range groups {
		args = append(args, "--group", g)
	}
	if r != nil {
		client, err := r.connect(c.Context)
		if err != nil {
			return err
		}
		args = append(args, "--ca-url", client.URL(), "--fingerprint", pki.Fingerprint(client.Root()))
	}
	text, err := gate.RenderUnit(gate.UnitOptions{Exec: exe, Args: args, WritablePaths: []string{home}})
	if err != nil {
		return err
	}
	o.GateUnit, o.GateUnitName, o.GateSystemdDir = text, gate.UnitName, c.String("gate-systemd-dir")
	return nil
}
