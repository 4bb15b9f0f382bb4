package main

// compare.go: `issuebench compare` runs step-ca and `dockca serve` one after
// the other under the same load from this same client, at each concurrency
// asked for, and prints both rates and their ratio. Everything is in one
// run so that the ratio means something on a shared machine.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/store"
)

func runCompare(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	stepBin := fs.String("stepca", "step-ca", "step-ca binary")
	dockBin := fs.String("dockca", "dockca", "dockca binary")
	levels := fs.String("c", "64,1", "comma-separated client counts")
	dur := fs.Duration("d", 10*time.Second, "measured duration of each run")
	warm := fs.Duration("warmup", 2*time.Second, "warm-up before each measured window")
	n := fs.Int("n", 40000, "tokens+CSRs to pre-make per run")
	fs.Parse(args)
	type row struct {
		c          int
		step, dock *outcome
	}
	var rows []row
	for _, f := range strings.Split(*levels, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return fmt.Errorf("compare: -c %q: not a client count", f)
		}
		o := runOpts{conc: c, warm: *warm, dur: *dur}
		fmt.Printf("\n== step-ca, %d clients\n", c)
		s, err := stepcaRun(o, *stepBin, *n, false)
		if err != nil {
			return fmt.Errorf("step-ca at %d clients: %w", c, err)
		}
		s.report("stepca", o, "signings")
		fmt.Printf("\n== dockca, %d clients\n", c)
		d, err := dockcaRun(o, *dockBin, *n)
		if err != nil {
			return fmt.Errorf("dockca at %d clients: %w", c, err)
		}
		d.report("dockca", o, "signings")
		rows = append(rows, row{c, s, d})
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	rate := func(r *outcome) float64 { return float64(r.ok) / r.window.Seconds() }
	fmt.Printf("\n| clients | dockca | step-ca v0.30.2 | dockca / step-ca |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %d | %.0f/s, p50 %s, p99 %s, %d errors | %.0f/s, p50 %s, p99 %s, %d errors | **%.2f** |\n", r.c,
			rate(r.dock), ms(pct(r.dock.lat, 50)), ms(pct(r.dock.lat, 99)), r.dock.failed,
			rate(r.step), ms(pct(r.step.lat, 50)), ms(pct(r.step.lat, 99)), r.step.failed, rate(r.dock)/rate(r.step))
	}
	for _, r := range rows {
		fmt.Printf("RATIO c=%d dockca=%.1f stepca=%.1f ratio=%.2f dockca_p99_ms=%.2f stepca_p99_ms=%.2f\n", r.c,
			rate(r.dock), rate(r.step), rate(r.dock)/rate(r.step),
			float64(pct(r.dock.lat, 99))/1e6, float64(pct(r.step.lat, 99))/1e6)
	}
	return nil
}

// dockcaRun initialises a fresh dockca home (development CA, keys
// unencrypted like step-ca's here), mints n client tokens in-process,
// starts `dockca serve` on it, loads it, stops it and checks that every
// certificate answered 2xx is stored exactly once with its token spent.
func dockcaRun(o runOpts, bin string, n int) (*outcome, error) {
	dir, err := os.MkdirTemp("", "issuebench-dockca-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	if p50, p99, err := fsyncProbe(dir, 200); err == nil {
		fmt.Printf("disk: 4 KiB write+fdatasync in %s: p50 %v p99 %v\n", dir, p50, p99)
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	base := "https://" + addr
	ctx := context.Background()
	st, err := store.Open(store.Path(home), nil)
	if err != nil {
		return nil, err
	}
	toks, root, err := func() ([]string, *x509.Certificate, error) {
		defer st.Close()
		if _, err := ca.Init(ctx, st, ca.InitOptions{Name: "issuebench"}); err != nil {
			return nil, nil, err
		}
		_, root, _, err := ca.LoadCertificates(ctx, st)
		if err != nil {
			return nil, nil, err
		}
		minter, err := ca.UnlockTokenKey(ctx, st, nil)
		if err != nil {
			return nil, nil, err
		}
		toks := make([]string, n)
		now := time.Now()
		t := time.Now()
		err = parallel(n, func(i int) (err error) {
			toks[i], _, err = minter.Mint(ca.TokenRequest{Kind: "client", Name: fmt.Sprintf("c%07d.issuebench.test", i), CAURL: base, TTL: time.Hour}, now)
			return err
		})
		fmt.Printf("pre-made %d tokens in %v\n", n, time.Since(t).Round(time.Millisecond))
		return toks, root, err
	}()
	if err != nil {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("c%07d.issuebench.test", i)
	}
	t := time.Now()
	csrs, err := makeCSRs(names, make([][]string, n))
	if err != nil {
		return nil, err
	}
	fmt.Printf("pre-made %d keys+CSRs in %v\n", n, time.Since(t).Round(time.Millisecond))
	bodies := signBodies(csrs, toks, "token")

	srv, err := startChild(filepath.Join(dir, "dockca.log"), bin, "--home", home, "serve", "--no-password",
		"--listen", addr, "--sign-rate", "1e9", "--sign-burst", "1000000000")
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	tlsCfg := &tls.Config{RootCAs: x509.NewCertPool()}
	tlsCfg.RootCAs.AddCert(root)
	if err := srv.waitHealthy(base+"/healthz", tlsCfg); err != nil {
		return nil, err
	}
	fmt.Printf("dockca serve up on %s\n", base)
	out := loadChild(srv, "dockca", base+"/v1/sign", tlsCfg, bodies, o)
	return out, dockcaStored(home, out.totalOK)
}

// dockcaStored checks the database after the service stopped: one client
// certificate per 2xx answer, each with its own spent token.
func dockcaStored(home string, okAnswers int) error {
	st, err := store.Open(store.Path(home), &store.Options{ReadOnly: true, LockTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	certs, err := st.List(ctx, store.Filter{Kind: store.KindClient})
	if err != nil {
		return err
	}
	tokens := map[string]bool{}
	for _, c := range certs {
		if c.TokenID == "" || tokens[c.TokenID] {
			return fmt.Errorf("certificate %s: token %q missing or spent twice", c.Serial, c.TokenID)
		}
		tokens[c.TokenID] = true
		if u, err := st.TokenUsed(ctx, c.TokenID); err != nil || u == nil || u.Serial != c.Serial {
			return fmt.Errorf("certificate %s: its token is not recorded as spent on it", c.Serial)
		}
	}
	fmt.Printf("db: %d client certificates, each with its own spent token; 2xx answers %d\n", len(certs), okAnswers)
	if len(certs) != okAnswers {
		return errors.New("the number of stored certificates differs from the number of 2xx answers")
	}
	return nil
}
