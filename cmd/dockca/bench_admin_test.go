package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockca/dockca/admin"
	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/serve"
	"github.com/dockca/dockca/store"
)

// startService runs dockca serve in this process for a new CA home (fsync
// on, a real HTTPS listener and admin socket) and returns the home.
func startService(tb testing.TB) string {
	tb.Helper()
	home := dockerdtest.ShortTempDir(tb)
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := ca.Init(context.Background(), st, ca.InitOptions{Password: []byte("bench-password")}); err != nil {
		tb.Fatal(err)
	}
	srv, err := serve.New(context.Background(), st, []byte("bench-password"),
		serve.Options{Listen: "127.0.0.1:0", Home: home, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	tb.Cleanup(func() { cancel(); <-done; st.Close() })
	return home
}

// runQuiet runs the CLI in-process with output discarded, as a benchmark
// loop does; it fails the benchmark on a non-zero exit.
func runQuiet(tb testing.TB, home string, stdin io.Reader, args ...string) {
	var errb strings.Builder
	e := &env{Stdin: stdin, Stdout: io.Discard, Stderr: &errb, Getenv: func(string) string { return "" },
		IsTerminal: func() bool { return false }, ReadPassword: func(string) ([]byte, error) { return nil, io.EOF }}
	if code := run(context.Background(), append([]string{"dockca", "--home", home}, args...), e); code != 0 {
		tb.Fatalf("dockca %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
}

// BenchmarkAdminCommandWhileServing measures whole admin commands run
// while dockca serve holds the database: the decision (socket first, no
// lock wait), the round trip over the admin socket and the work. The
// target is under 50 ms per command (before: 2 s of lock timeout each).
//
//	go test -tags nobadger,nomysql,nopgx -run '^$' -bench AdminCommandWhileServing ./cmd/dockca/
func BenchmarkAdminCommandWhileServing(b *testing.B) {
	home := startService(b)
	for i := 0; i < 20; i++ {
		runQuiet(b, home, nil, "token", "create", "--kind", "client", fmt.Sprintf("seed%d", i))
	}
	// The choice alone: socket first, never the lock.
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			adm, err := admin.Open(context.Background(), home, admin.OpenOptions{Writable: true})
			if err != nil {
				b.Fatal(err)
			}
			if _, ok := adm.(*admin.Client); !ok {
				b.Fatalf("admin.Open chose %T while the service runs", adm)
			}
			adm.Close()
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/open")
	})
	out := filepath.Join(b.TempDir(), "certs")
	for _, bc := range []struct {
		name string
		args func(i int) []string
	}{
		{"token-ls", func(int) []string { return []string{"token", "ls"} }},
		{"ls", func(int) []string { return []string{"ls"} }},
		{"token-create", func(i int) []string { return []string{"token", "create", "--kind", "client", fmt.Sprintf("b%d", i)} }},
		{"issue-client", func(i int) []string {
			return []string{"issue", "client", fmt.Sprintf("c%d", i), "--out", filepath.Join(out, fmt.Sprint(i))}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				runQuiet(b, home, nil, bc.args(i)...)
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/command")
		})
	}
}

// BenchmarkTokenFleet10000 mints 10,000 tokens with one `token create
// --from-file` through the admin socket of a running service (one
// transaction). Target: under 5 s.
//
//	go test -tags nobadger,nomysql,nopgx -run '^$' -bench TokenFleet10000 -benchtime 3x ./cmd/dockca/
func BenchmarkTokenFleet10000(b *testing.B) {
	home := startService(b)
	var names strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&names, "agent-%05d\n", i)
	}
	file := filepath.Join(b.TempDir(), "names")
	if err := os.WriteFile(file, []byte(names.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		runQuiet(b, home, nil, "token", "create", "--kind", "client", "--role", "readonly", "--from-file", file)
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/10k-tokens")
}
