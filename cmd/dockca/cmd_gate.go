package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/authz"
	"github.com/dockca/dockca/gate"
)

func newGateCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "gate",
		Usage: "run a mutual-TLS front door for dockerd that judges every request it forwards",
		UsageText: "dockca gate [--listen 0.0.0.0:2376] [--docker unix:///var/run/docker.sock] [--cert-dir /etc/docker/tls]\n" +
			"   [--home DIR | --ca-url URL[,URL...] --fingerprint SHA256] [--policy FILE] [--audit-log FILE|-] [--refresh 30s] [--max-stale 10m]",
		Description: "dockerd then listens only on its unix socket. The gate terminates TLS: a client certificate from this\n" +
			"CA is required, and revocation is checked at the handshake and again on every request. Each request is\n" +
			"parsed once, judged by the same roles and policy as 'dockca authz' (same denial messages and audit lines),\n" +
			"and forwarded as parsed: the bodies that decide are judged and forwarded byte for byte, data bodies (build\n" +
			"contexts, image loads, archive uploads) are streamed, and repeated significant headers are refused.\n" +
			"Attach, exec, logs -f, events, cp, build and save/load work through it.\n\n" +
			"Its certificate and key are --cert-dir/server-cert.pem and server-key.pem (what 'dockca daemon setup' and\n" +
			"'dockca renew --watch' write); they are reloaded when they change, without dropping connections. Local\n" +
			"mode (--home) and remote mode (--ca-url) decide revocation as for 'dockca authz'.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "0.0.0.0:2376", Usage: "TCP `ADDRESS` of the TLS listener"},
			&cli.StringFlag{Name: "docker", Value: "unix://" + authz.DefaultDockerSocket, Usage: "dockerd's local API, `unix:///PATH`"},
			&cli.StringFlag{Name: "cert-dir", Value: "/etc/docker/tls", Usage: "`DIR` holding server-cert.pem and server-key.pem"},
		}, engineFlags()...),
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 0, ""); err != nil {
				return err
			}
			docker := c.String("docker")
			if !strings.HasPrefix(docker, "unix://") || len(docker) == len("unix://") {
				return usagef("gate: --docker %q must be unix:///PATH (dockerd's local socket)", docker)
			}
			engine, err := engineOptions(c, e, "gate", strings.NewReplacer(":", "_", "/", "_").Replace(c.String("listen")),
				authz.NewDockerSocket(strings.TrimPrefix(docker, "unix://")))
			if err != nil {
				return err
			}
			g, err := gate.New(gate.Options{Listen: c.String("listen"), Docker: docker, CertDir: c.String("cert-dir"),
				Authz: *engine, Log: slog.New(slog.NewTextHandler(e.Stderr, nil))})
			if err != nil {
				return fmt.Errorf("gate: %w", err)
			}
			fmt.Fprintf(e.Stderr, "dockca gate: listening on %s, forwarding to %s\n", c.String("listen"), docker)
			return g.Serve(c.Context)
		},
	}
}
