package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// cliRunner runs the whole app in-process, as a user would from a shell, with
// captured output and a private environment.
type cliRunner struct {
	t   testing.TB
	env map[string]string
}

func newCLI(t testing.TB) *cliRunner {
	t.Helper()
	home := t.TempDir() + "/home"
	return &cliRunner{t: t, env: map[string]string{
		"DOCKCA_HOME":     home, // passed as --home: urfave reads EnvVars from the process
		"DOCKCA_PASSWORD": "correct horse battery",
		"HOME":            t.TempDir(),
	}}
}

func (r *cliRunner) home() string { return r.env["DOCKCA_HOME"] }

type result struct {
	out, err string
	code     int
}

func (r *cliRunner) run(args ...string) result {
	r.t.Helper()
	return r.runRaw(append([]string{"--home", r.home()}, args...)...)
}

// runRaw runs without the --home the runner normally adds.
func (r *cliRunner) runRaw(args ...string) result {
	r.t.Helper()
	return r.runCtx(context.Background(), args...)
}

// runCtx runs with a context, for long-running commands a test stops.
func (r *cliRunner) runCtx(ctx context.Context, args ...string) result {
	// Long-running commands (the gate, the plugin) log from several
	// goroutines, each through its own handler: os.Stderr takes that, a
	// bare bytes.Buffer does not.
	var out, errOut dockerdtest.LockedBuffer
	e := &env{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut,
		Getenv:       func(k string) string { return r.env[k] },
		IsTerminal:   func() bool { return false },
		ReadPassword: func(string) ([]byte, error) { return nil, errors.New("no terminal in tests") },
	}
	code := run(ctx, append([]string{"dockca"}, args...), e)
	return result{out: out.String(), err: errOut.String(), code: code}
}

func (r *cliRunner) ok(args ...string) string {
	r.t.Helper()
	res := r.run(args...)
	if res.code != 0 {
		r.t.Fatalf("dockca %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.code, res.out, res.err)
	}
	return res.out
}

func TestReorderArgs(t *testing.T) {
	app := newApp(&env{})
	cases := []struct{ in, want string }{
		{"issue client alice --role readonly", "issue client --role readonly alice"},
		{"issue client alice --role=readonly --ttl 7d", "issue client --role=readonly --ttl 7d alice"},
		{"issue daemon h --san a --san b --force", "issue daemon --san a --san b --force h"},
		{"ls --json --home /x", "--home /x ls --json"},
		{"revoke a b --reason superseded", "revoke --reason superseded a b"},
		{"show -- -weird", "show -- -weird"},
		{"issue client --role admin bob", "issue client --role admin bob"},
	}
	for _, c := range cases {
		got := strings.Join(reorderArgs(app, append([]string{"dockca"}, strings.Fields(c.in)...))[1:], " ")
		if got != c.want {
			t.Errorf("reorder %q = %q, want %q", c.in, got, c.want)
		}
	}
}
