// Command fakedockca stands in for the dockca CLI in tests of
// examples/provision-daemon.sh until the real CLI is wired: it accepts
// `daemon setup` with the flags the real command has and runs the real
// daemonsetup.Setup against a test CA kept in $DOCKCA_HOME, so the script's
// idempotency and temp-root handling are tested with real file effects.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/dockca/dockca/daemonsetup"
	"github.com/dockca/dockca/internal/testca"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dockca:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 3 || args[0] != "daemon" || args[1] != "setup" {
		return fmt.Errorf("usage: dockca daemon setup HOST [flags]")
	}
	o := daemonsetup.SetupOptions{Host: args[2]}
	fs := flag.NewFlagSet("daemon setup", flag.ContinueOnError)
	var sans, listen list
	fs.Var(&sans, "san", "")
	fs.Var(&listen, "listen", "")
	fs.StringVar(&o.TLSDir, "tls-dir", daemonsetup.DefaultTLSDir, "")
	fs.StringVar(&o.ConfigPath, "config", daemonsetup.DefaultConfigPath, "")
	fs.StringVar(&o.SystemdDir, "systemd-dir", daemonsetup.DefaultSystemdDir, "")
	fs.BoolVar(&o.DryRun, "dry-run", false, "")
	if err := fs.Parse(args[3:]); err != nil {
		return err
	}
	o.SANs, o.Listen = sans, listen
	home := os.Getenv("DOCKCA_HOME")
	if home == "" {
		return fmt.Errorf("DOCKCA_HOME is not set")
	}
	ca, err := testca.LoadOrCreate(home)
	if err != nil {
		return err
	}
	_, err = daemonsetup.Setup(context.Background(), o, ca, os.Stdout)
	return err
}
