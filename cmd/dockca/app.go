package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// env is everything a command may touch of its process, so tests can run
// the whole app in-process with captured output and a fake environment.
type env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// IsTerminal reports whether stdin is an interactive terminal.
	IsTerminal func() bool
	// ReadPassword reads a line without echo from the terminal.
	ReadPassword func(prompt string) ([]byte, error)
	// Self is how to run dockca again in the hints it prints: the path it
	// was started by (./dockca) when that has a slash, else "dockca".
	Self string
}

// selfInvocation turns argv[0] into Self: a pasted hint must run the same
// binary, and ./dockca is not on the PATH.
func selfInvocation(argv0 string) string {
	if !strings.Contains(argv0, "/") {
		return "dockca"
	}
	if strings.Trim(argv0, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-+") == "" {
		return argv0
	}
	return "'" + strings.ReplaceAll(argv0, "'", `'\''`) + "'"
}

func newSystemEnv() *env {
	return &env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv,
		IsTerminal: func() bool { return term.IsTerminal(int(os.Stdin.Fd())) },
		ReadPassword: func(prompt string) ([]byte, error) {
			fmt.Fprint(os.Stderr, prompt)
			pw, err := term.ReadPassword(int(os.Stdin.Fd()))
			fmt.Fprintln(os.Stderr)
			return pw, err
		},
	}
}

// exitStatus ends the process with a status and no message of its own
// (for example dockca audit's 3: the report already said it all).
type exitStatus struct{ code int }

func (e *exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError marks a malformed command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// run builds the app, runs it on args and returns the exit status. Errors
// are printed once, here, as one line on stderr.
func run(ctx context.Context, args []string, e *env) int {
	if isCompletionRequest(args) && slices.Contains(args, "--") {
		// urfave/cli would run the command itself: a completion request
		// must never act.
		return exitOK
	}
	if e.Self == "" && len(args) > 0 {
		e.Self = selfInvocation(args[0])
	}
	app := newApp(e)
	err := app.RunContext(ctx, reorderArgs(app, args))
	if err == nil {
		return exitOK
	}
	var es *exitStatus
	if errors.As(err, &es) {
		return es.code
	}
	msg := err.Error()
	// A damaged database is said the same way by every command, without
	// the prefixes of what was being done when it was found.
	var de *store.DamagedError
	if errors.As(err, &de) {
		msg = de.Error()
	}
	msg = oneLine(strings.TrimSuffix(strings.TrimSpace(msg), "."))
	fmt.Fprintf(e.Stderr, "dockca: %s\n", msg)
	var ue *usageError
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ec) && ec.ExitCode() != 0:
		return ec.ExitCode()
	}
	return exitError
}

// oneLine escapes control characters (as %q would) so that an error is
// always one line: user input in a message, quoted or not, cannot forge a
// second one.
func oneLine(msg string) string {
	var b strings.Builder
	for _, r := range msg {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func newApp(e *env) *cli.App {
	app := &cli.App{
		Name:  "dockca",
		Usage: "a certificate authority for the Docker Engine API over mutual TLS",
		Description: "dockca issues and revokes daemon (server) and client certificates for dockerd and the docker CLI,\n" +
			"keeps every one of them in one bbolt database under --home, and publishes a CRL.\n\n" +
			"Exit status: 0 success, 1 error, 2 usage error.",
		Reader:          e.Stdin,
		Writer:          e.Stdout,
		ErrWriter:       e.Stderr,
		HideHelpCommand: true,
		Version:         currentVersion().Version,
		// The shell scripts of dockca completion ask the app for
		// candidates with --generate-bash-completion.
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "home",
				Usage:   "dockca's home `DIR`, holding dockca.db (default $XDG_DATA_HOME/dockca, i.e. ~/.local/share/dockca)",
				EnvVars: []string{"DOCKCA_HOME"},
			},
			&cli.StringFlag{
				Name:    "password-file",
				Usage:   "read the CA password from `FILE` (else $DOCKCA_PASSWORD, else a prompt on a terminal)",
				EnvVars: []string{"DOCKCA_PASSWORD_FILE"},
			},
			&cli.StringFlag{
				Name: "store",
				Usage: "where the CA is stored (`URL`): bolt:PATH (default bolt:<home>/dockca.db) or etcd://HOST:PORT[,HOST:PORT...]/PREFIX " +
					"for several dockca serve replicas on one etcd cluster; --home still holds the local files (the admin socket, the service's certificate)",
				EnvVars: []string{"DOCKCA_STORE"},
			},
			&cli.StringFlag{Name: "etcd-cacert", Usage: "the CA certificate (PEM `FILE`) that signed the etcd cluster's certificates; any --etcd-* flag makes dockca talk to etcd over TLS", EnvVars: []string{"DOCKCA_ETCD_CACERT"}},
			&cli.StringFlag{Name: "etcd-cert", Usage: "client certificate (PEM `FILE`) for etcd's client-certificate authentication", EnvVars: []string{"DOCKCA_ETCD_CERT"}},
			&cli.StringFlag{Name: "etcd-key", Usage: "the key (PEM `FILE`) of --etcd-cert", EnvVars: []string{"DOCKCA_ETCD_KEY"}},
		},
		Commands: []*cli.Command{
			newInitCommand(e),
			newIssueCommand(e),
			newSignCommand(e),
			newListCommand(e),
			newShowCommand(e),
			newRevokeCommand(e),
			newCRLCommand(e),
			newBackupCommand(e),
			newCheckCommand(e),
			newAccessCommand(e),
			newPolicyCommand(e),
			newContextCommand(e),
			newDaemonCommand(e),
			newAuditCommand(e),
			newAuthzCommand(e),
			newGateCommand(e),
			newServeCommand(e),
			newStoreCommand(e),
			newTokenCommand(e),
			newEnrollCommand(e),
			newRenewCommand(e),
			newRotateCommand(e),
			newVersionCommand(e),
			newHelpCommand(e),
			newCompletionCommand(e),
		},
		ExitErrHandler: func(*cli.Context, error) {},
		CommandNotFound: func(c *cli.Context, name string) {
			// Reported by the Action below, which urfave calls next.
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usagef("%v", err) },
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return unknownCommand(c.App.Commands, "", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	// urfave adds --help only when no command is called help; dockca
	// has its own (see newHelpCommand).
	app.Flags = append(app.Flags, cli.HelpFlag)
	setUsageErrors(app.Commands)
	return app
}

// setUsageErrors makes every command report flag errors as usage errors
// (exit 2, one line) instead of urfave's help dump.
//
// Required flags are checked here too: urfave reports them as an ordinary
// error (exit 1) after dumping the help.
func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		flags := c.Flags
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return flagError(flags, err) }
		var required []string
		for _, f := range c.Flags {
			if sf, ok := f.(*cli.StringFlag); ok && sf.Required {
				sf.Required = false
				required = append(required, sf.Name)
			}
		}
		if act := c.Action; len(required) > 0 && act != nil {
			c.Action = func(c *cli.Context) error {
				var missing []string
				for _, n := range required {
					if !c.IsSet(n) {
						missing = append(missing, "--"+n)
					}
				}
				if len(missing) > 0 {
					return usagef("%s: missing required flag %s", cmdName(c), strings.Join(missing, ", "))
				}
				return act(c)
			}
		}
		// urfave adds a "help" (alias "h") subcommand to every command,
		// which would swallow a client or host called help or h; --help
		// stays.
		c.HideHelpCommand = true
		if c.Action == nil && len(c.Subcommands) > 0 {
			c.Action = func(c *cli.Context) error {
				if c.Args().Len() > 0 {
					return unknownCommand(c.Command.Subcommands, cmdName(c), c.Args().First())
				}
				return usagef("%q needs a subcommand (see 'dockca %s --help')", cmdName(c), cmdName(c))
			}
		}
		setUsageErrors(c.Subcommands)
	}
}

// flagError is the usage error for a flag urfave could not parse, naming
// the flags an unknown one is close to.
func flagError(flags []cli.Flag, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: ")
	if !ok {
		return usagef("%v", err)
	}
	// The closest flags, within two edits.
	var near []string
	best := 3
	for _, f := range flags {
		for _, n := range f.Names() {
			d := editDistance(strings.TrimLeft(name, "-"), n)
			if len(n) < 2 || d > best {
				continue
			}
			if d < best {
				best, near = d, nil
			}
			near = append(near, "--"+n)
			break
		}
	}
	if best > 2 {
		near = nil
	}
	if len(near) == 0 {
		return usagef("unknown flag %s", name)
	}
	return usagef("unknown flag %s; did you mean %s?", name, strings.Join(near, " or "))
}

// reorderArgs lets flags follow positional arguments, as docker's CLI
// allows (dockca issue client alice --role readonly): urfave/cli v2 stops
// at the first positional argument. It walks the command path and moves
// every flag (with its value, for flags that take one) in front of the
// positionals; global flags move to the front. "--" ends flag parsing.
//
// A completion request (the shell scripts of dockca completion end the
// words typed so far with --generate-bash-completion) is left as it is:
// moved, the flag would no longer be last, and urfave would run the
// command instead of listing candidates.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 || isCompletionRequest(args) {
		return args
	}
	globals := flagTable(app.Flags)
	var global, path, flags, positional []string
	cmds := app.Commands
	var leaf map[string]bool
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			name, hasValue := flagName(a)
			takes, isLeaf := leaf[name]
			target := &flags
			if !isLeaf {
				if g, ok := globals[name]; ok {
					takes, target = g, &global
				}
			}
			*target = append(*target, a)
			if takes && !hasValue && i+1 < len(args) {
				i++
				*target = append(*target, args[i])
			}
			continue
		}
		if len(positional) == 0 {
			if c := findCommand(cmds, a); c != nil {
				path = append(path, a)
				cmds = c.Subcommands
				leaf = flagTable(c.Flags)
				continue
			}
		}
		positional = append(positional, a)
	}
	out := []string{args[0]}
	out = append(out, global...)
	out = append(out, path...)
	out = append(out, flags...)
	if len(positional) > 0 && positional[0] != "--" && strings.HasPrefix(positional[0], "-") {
		out = append(out, "--")
	}
	return append(out, positional...)
}

// isCompletionRequest reports whether args ask for completion candidates.
func isCompletionRequest(args []string) bool {
	return len(args) > 0 && args[len(args)-1] == "--generate-bash-completion"
}

func flagName(a string) (name string, hasValue bool) {
	n := strings.TrimLeft(a, "-")
	if i := strings.IndexByte(n, '='); i >= 0 {
		return n[:i], true
	}
	return n, false
}

// flagTable maps every flag name and alias to whether it takes a value.
func flagTable(flags []cli.Flag) map[string]bool {
	t := map[string]bool{"help": false, "h": false}
	for _, f := range flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			t[n] = !isBool
		}
	}
	return t
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.Name == name {
			return c
		}
		for _, a := range c.Aliases {
			if a == name {
				return c
			}
		}
	}
	return nil
}

// homeDir resolves --home, $DOCKCA_HOME, $XDG_DATA_HOME/dockca or
// ~/.local/share/dockca, in that order.
func homeDir(c *cli.Context, e *env) (string, error) {
	if h := c.String("home"); h != "" {
		return filepath.Abs(h)
	}
	if x := e.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Abs(filepath.Join(x, "dockca"))
	}
	h := e.Getenv("HOME")
	if h == "" {
		var err error
		if h, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("find home directory: %w (set --home or DOCKCA_HOME)", err)
		}
	}
	return filepath.Join(h, ".local", "share", "dockca"), nil
}

// storeConfig resolves --store and the --etcd-* flags for home. A URL
// that does not parse is a usage error.
func storeConfig(c *cli.Context, home string) (store.Config, error) {
	cfg := store.Config{URL: c.String("store"), Etcd: store.EtcdTLS{
		CACert: c.String("etcd-cacert"), Cert: c.String("etcd-cert"), Key: c.String("etcd-key")}}
	if cfg.URL != "" {
		if _, err := store.ParseURL(cfg.URL); err != nil {
			return cfg, usagef("--store: %v", err)
		}
	}
	if (cfg.Etcd.Cert == "") != (cfg.Etcd.Key == "") {
		return cfg, usagef("--etcd-cert and --etcd-key go together")
	}
	if cfg.Etcd != (store.EtcdTLS{}) && !cfg.IsEtcd() {
		return cfg, usagef("--etcd-cacert, --etcd-cert and --etcd-key apply to an etcd:// --store only")
	}
	return cfg.ForHome(home), nil
}

// homeAndStore is homeDir and storeConfig together.
func homeAndStore(c *cli.Context, e *env) (string, store.Config, error) {
	home, err := homeDir(c, e)
	if err != nil {
		return "", store.Config{}, err
	}
	cfg, err := storeConfig(c, home)
	return home, cfg, err
}

// inputError reports a bad value from the command line: a policy refusal
// (a name, role or lifetime the CA will not issue) exits 1 like every
// refusal; anything else is a malformed command line, exit 2.
func inputError(err error, format string, args ...any) error {
	if errors.Is(err, pki.ErrPolicy) {
		return fmt.Errorf(format+": %w", append(args, err)...)
	}
	return usagef(format+": %v", append(args, err)...)
}

// argsExactly checks the positional argument count.
func argsExactly(c *cli.Context, n int, what string) error {
	switch got := c.Args().Len(); {
	case got < n:
		return usagef("%s: missing %s", cmdName(c), what)
	case got > n:
		return usagef("%s: unexpected argument %q", cmdName(c), c.Args().Get(n))
	}
	return nil
}

// cmdName is the command path without the program name ("issue client").
func cmdName(c *cli.Context) string {
	return strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ")
}

// sharedBoolFlag is a global urfave flag (--help, --version) with an Apply
// that writes into a copy. urfave applies its one global HelpFlag and
// VersionFlag to every app and command it runs, and BoolFlag.Apply writes
// into the flag it is called on: a data race as soon as two apps run in one
// process (the tests run the plugin, the gate and commands side by side).
type sharedBoolFlag struct{ cli.BoolFlag }

func (f *sharedBoolFlag) Apply(set *flag.FlagSet) error {
	c := f.BoolFlag
	return c.Apply(set)
}

func init() {
	cli.HelpFlag = &sharedBoolFlag{cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help", DisableDefaultText: true}}
}
