package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/audit"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/store"
)

func newAuditCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "audit",
		Usage:     "find Docker APIs exposed without authentication, client verification or the right CA",
		UsageText: "dockca audit [--ports 2375,2376] [--timeout 3s] [--concurrency 64] [--json] [--fail-on critical|high|medium|none] TARGET...",
		Description: "Probes each TARGET (a host, host:port, or CIDR of at most a /16) the way an attacker would, sending only\n" +
			"GET /_ping and GET /version. Findings: critical for a plain-HTTP API, a TLS API without client\n" +
			"verification, or one that accepts a client certificate from a foreign CA; high for certificate problems\n" +
			"(expired, expiring within 30 days, wrong names, weak key, TLS below 1.2, not issued by this CA when\n" +
			"--home holds one, --ca-url names the service or --roots is given); info when mutual TLS with this CA\n" +
			"is in place.\n" +
			"Exit status: 0 nothing at or above --fail-on, 3 something was, 1 error. Audit only hosts you own.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ports", Value: "2375,2376", Usage: "comma-separated `PORTS` tried for targets without a port"},
			&cli.DurationFlag{Name: "timeout", Value: audit.DefaultTimeout, Usage: "per-connection `TIMEOUT`"},
			&cli.IntFlag{Name: "concurrency", Value: audit.DefaultConcurrency, Usage: "at most `N` connections in flight"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON (an object with targets and findings)"},
			&cli.StringFlag{Name: "fail-on", Value: "high", Usage: "exit 3 when a finding of `SEVERITY` or worse is found: critical, high, medium or none"},
			&cli.StringFlag{Name: "roots", Usage: "PEM `FILE` of the root(s) daemons should be issued by (default: the CA in --home, if any)"},
			caURLFlag("take the root from the dockca service at `URL` (with --fingerprint)"),
			fingerprintFlag("the service's root `SHA256` fingerprint (without it, asked on a terminal)"),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() == 0 {
				return usagef("audit: missing TARGET")
			}
			failOn, err := audit.ParseSeverity(c.String("fail-on"))
			if err != nil {
				return usagef("audit: --fail-on: %v", err)
			}
			ports, err := parsePorts(c.String("ports"))
			if err != nil {
				return usagef("audit: --ports: %v", err)
			}
			if c.Int("concurrency") < 1 {
				return usagef("audit: --concurrency must be at least 1")
			}
			if c.Duration("timeout") <= 0 {
				return usagef("audit: --timeout must be positive")
			}
			endpoints, err := audit.ParseTargets(c.Args().Slice(), ports)
			if err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			o := audit.Options{Timeout: c.Duration("timeout"), Concurrency: c.Int("concurrency")}
			if o.Roots, err = auditRoots(c, e); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			report, runErr := audit.Run(c.Context, endpoints, o)
			if report != nil {
				write := report.WriteTable
				if c.Bool("json") {
					write = report.WriteJSON
				}
				if err := write(c.App.Writer); err != nil {
					return err
				}
			}
			code := audit.ExitCode(report, runErr, failOn)
			switch {
			case runErr != nil && code == audit.ExitError:
				return fmt.Errorf("audit: %w", runErr)
			case runErr != nil:
				fmt.Fprintf(e.Stderr, "dockca: audit: %v\n", runErr)
			}
			if code != 0 {
				return &exitStatus{code: code}
			}
			return nil
		},
	}
}

// auditRoots returns the roots daemons should chain to: --roots, else the
// root of the service at --ca-url (pinned by fingerprint), else the CA in
// the home when there is one (read without unlocking anything).
func auditRoots(c *cli.Context, e *env) ([]*x509.Certificate, error) {
	urls, err := caURLs(c)
	if err != nil {
		return nil, err
	}
	if urls != nil {
		client, err := trustCA(c.Context, e, urls, c.String("fingerprint"))
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{client.Root()}, nil
	}
	if f := c.String("roots"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		return audit.ParseRootsPEM(b)
	}
	home, cfg, err := homeAndStore(c, e)
	if err != nil {
		return nil, err
	}
	if !cfg.IsEtcd() && !store.Exists(home) {
		return nil, nil
	}
	st, err := store.OpenConfig(c.Context, cfg, &store.Options{ReadOnly: true, LockTimeout: 500 * time.Millisecond})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			fmt.Fprintf(e.Stderr, "dockca: audit: the CA database is in use; issuer checks are skipped (use --roots)\n")
			return nil, nil
		}
		return nil, err
	}
	defer st.Close()
	_, root, _, err := ca.LoadCertificates(c.Context, st)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{root}, nil
}

func parsePorts(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q is not a port number", p)
		}
		out = append(out, n)
	}
	return out, nil
}
