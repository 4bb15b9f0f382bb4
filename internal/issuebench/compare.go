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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/etcdtest"
	"github.com/dockca/dockca/store"
)

func runCompare(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	stepBin := fs.String("stepca", "step-ca", "step-ca binary")
	dockBin := fs.String("dockca", "dockca", "dockca binary")
	levels := fs.String("c", "64,1", "comma-separated client counts")
	rounds := fs.Int("rounds", 3, "alternating step-ca/dockca runs per client count")
	dur := fs.Duration("d", 5*time.Second, "measured duration of each run")
	warm := fs.Duration("warmup", time.Second, "warm-up before each measured window")
	n := fs.Int("n", 15000, "tokens+CSRs per run (a run ends early if they run out)")
	etcdBin := fs.String("etcd", "", "etcd binary: also run dockca serve on a fresh 3-member etcd cluster on loopback (--store etcd://...) in each round")
	fs.Parse(args)

	// The CSRs are made once (tokens are minted for each fresh service):
	// step-ca's carry the name as DNS SAN, dockca client CSRs carry none.
	t := time.Now()
	names := benchNames(*n)
	stepSANs := make([][]string, *n)
	for i := range stepSANs {
		stepSANs[i] = []string{names[i]}
	}
	stepCSRs, err := makeCSRs(names, stepSANs)
	if err != nil {
		return err
	}
	dockCSRs, err := makeCSRs(names, make([][]string, *n))
	if err != nil {
		return err
	}
	fmt.Printf("made 2 x %d keys+CSRs in %v\n", *n, time.Since(t).Round(time.Millisecond))

	type row struct {
		c                int
		step, dock, etcd *outcome
		ratios, etcdRat  []float64
	}
	var rows []row
	for _, f := range strings.Split(*levels, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return fmt.Errorf("compare: -c %q: not a client count", f)
		}
		o := runOpts{conc: c, warm: *warm, dur: *dur}
		r := row{c: c, step: &outcome{errs: map[string]int{}}, dock: &outcome{errs: map[string]int{}}, etcd: &outcome{errs: map[string]int{}}}
		// Alternating short runs, so that a burst of load from elsewhere
		// on a shared machine hits both services alike.
		for round := 1; round <= *rounds; round++ {
			fmt.Printf("\n== step-ca, %d clients, round %d\n", c, round)
			s, err := stepcaRun(o, *stepBin, *n, false, stepCSRs)
			if err != nil {
				return fmt.Errorf("step-ca at %d clients: %w", c, err)
			}
			s.report("stepca", o, "signings")
			fmt.Printf("\n== dockca, %d clients, round %d\n", c, round)
			d, err := dockcaRun(o, *dockBin, dockCSRs, "")
			if err != nil {
				return fmt.Errorf("dockca at %d clients: %w", c, err)
			}
			d.report("dockca", o, "signings")
			r.ratios = append(r.ratios, d.rate()/s.rate())
			r.step.add(s)
			r.dock.add(d)
			if *etcdBin != "" {
				fmt.Printf("\n== dockca on a 3-member etcd, %d clients, round %d\n", c, round)
				de, err := dockcaRun(o, *dockBin, dockCSRs, *etcdBin)
				if err != nil {
					return fmt.Errorf("dockca on etcd at %d clients: %w", c, err)
				}
				de.report("dockca-etcd", o, "signings")
				r.etcdRat = append(r.etcdRat, de.rate()/s.rate())
				r.etcd.add(de)
			}
		}
		slices.Sort(r.step.lat)
		slices.Sort(r.dock.lat)
		slices.Sort(r.etcd.lat)
		rows = append(rows, r)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	fmt.Printf("\nAll %d rounds of each client count together (rate = successes / measured time):\n\n", *rounds)
	fmt.Printf("| clients | dockca | step-ca v0.30.2 | dockca / step-ca | per round |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		var per []string
		for _, x := range r.ratios {
			per = append(per, fmt.Sprintf("%.2f", x))
		}
		fmt.Printf("| %d | %.0f/s, p50 %s, p99 %s, %d errors | %.0f/s, p50 %s, p99 %s, %d errors | **%.2f** | %s |\n", r.c,
			r.dock.rate(), ms(pct(r.dock.lat, 50)), ms(pct(r.dock.lat, 99)), r.dock.failed,
			r.step.rate(), ms(pct(r.step.lat, 50)), ms(pct(r.step.lat, 99)), r.step.failed, r.dock.rate()/r.step.rate(), strings.Join(per, ", "))
	}
	if *etcdBin != "" {
		fmt.Printf("\ndockca serve on a 3-member etcd cluster (same machine, same rounds):\n\n")
		fmt.Printf("| clients | dockca on etcd | dockca on bbolt | step-ca v0.30.2 (bbolt) | etcd / step-ca | per round |\n|---|---|---|---|---|---|\n")
		for _, r := range rows {
			var per []string
			for _, x := range r.etcdRat {
				per = append(per, fmt.Sprintf("%.2f", x))
			}
			fmt.Printf("| %d | %.0f/s, p50 %s, p99 %s, %d errors | %.0f/s | %.0f/s | **%.2f** | %s |\n", r.c,
				r.etcd.rate(), ms(pct(r.etcd.lat, 50)), ms(pct(r.etcd.lat, 99)), r.etcd.failed,
				r.dock.rate(), r.step.rate(), r.etcd.rate()/r.step.rate(), strings.Join(per, ", "))
		}
	}
	fmt.Println()
	for _, r := range rows {
		if *etcdBin != "" {
			fmt.Printf("RATIO-ETCD c=%d dockca_etcd=%.1f stepca=%.1f ratio=%.2f\n", r.c, r.etcd.rate(), r.step.rate(), r.etcd.rate()/r.step.rate())
		}
		fmt.Printf("RATIO c=%d dockca=%.1f stepca=%.1f ratio=%.2f dockca_p99_ms=%.2f stepca_p99_ms=%.2f\n", r.c,
			r.dock.rate(), r.step.rate(), r.dock.rate()/r.step.rate(),
			float64(pct(r.dock.lat, 99))/1e6, float64(pct(r.step.lat, 99))/1e6)
	}
	return nil
}

// dockcaRun initialises a fresh dockca home (development CA, keys
// unencrypted like step-ca's here), mints n client tokens in-process,
// starts `dockca serve` on it, loads it, stops it and checks that every
// certificate answered 2xx is stored exactly once with its token spent.
//
// With etcdBin, the CA is copied into a fresh 3-member etcd cluster on
// loopback and the service runs on it (--store etcd://...).
func dockcaRun(o runOpts, bin string, csrs [][]byte, etcdBin string) (*outcome, error) {
	n := len(csrs)
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
		toks, names := make([]string, n), benchNames(n)
		now := time.Now()
		t := time.Now()
		err = parallel(n, func(i int) (err error) {
			toks[i], _, err = minter.Mint(ca.TokenRequest{Kind: "client", Name: names[i], CAURL: base, TTL: time.Hour}, now)
			return err
		})
		fmt.Printf("pre-made %d tokens in %v\n", n, time.Since(t).Round(time.Millisecond))
		return toks, root, err
	}()
	if err != nil {
		return nil, err
	}
	bodies := signBodies(csrs, toks, "token")
	cfg := store.Config{}.ForHome(home)
	if etcdBin != "" {
		cluster, err := etcdtest.Launch(filepath.Join(dir, "etcd"), etcdBin, 3)
		if cluster != nil {
			defer cluster.Stop()
		}
		if err != nil {
			return nil, err
		}
		cfg = store.Config{URL: cluster.URL("issuebench")}
		if _, err := store.Copy(ctx, store.Config{}.ForHome(home), cfg); err != nil {
			return nil, err
		}
		if err := os.Remove(store.Path(home)); err != nil {
			return nil, err
		}
		fmt.Printf("etcd: 3 members at %s\n", cluster.Endpoints())
	}

	srv, err := startChild(filepath.Join(dir, "dockca.log"), bin, "--home", home, "--store", cfg.URL, "serve", "--no-password",
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
	return out, dockcaStored(cfg, out.totalOK)
}

// dockcaStored checks the database after the service stopped: one client
// certificate per 2xx answer, each with its own spent token.
func dockcaStored(cfg store.Config, okAnswers int) error {
	st, err := store.OpenConfig(context.Background(), cfg, &store.Options{ReadOnly: true, LockTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	certs, err := st.List(ctx, store.Filter{Kind: "client"})
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
