// Command issuebench measures durable certificate issuance throughput of a CA
// service over HTTPS, step-ca and dockca side by side in one run (make
// bench-stepca), and the in-process crypto upper bound on the same machine.
// See README.md. It began as the company's shared harness
// (bench/issuebench); the compare mode is dockca's.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

const usage = `usage:
  issuebench stepca [-c 64] [-d 15s] [-warmup 2s] [-n 40000] [-bin PATH] [-keep]
  issuebench raw    [-c 64] [-d 15s] [-warmup 2s] [-n 2000]
  issuebench dockca -url URL -tokens FILE [-root PEM] [-c 64] [-d 15s] [-warmup 2s]
  issuebench compare [-stepca BIN] [-dockca BIN] [-c 64,1] [-d 10s] [-warmup 2s] [-n 40000]
"issuebench MODE -h" lists the flags of a mode.`

func main() {
	modes := map[string]func([]string) error{"stepca": runStepCA, "raw": runRaw, "dockca": runDockCA, "compare": runCompare}
	if len(os.Args) < 2 || modes[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err := modes[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "issuebench:", err)
		os.Exit(1)
	}
}

// runOpts are the flags every mode shares.
type runOpts struct {
	conc      int
	warm, dur time.Duration
}

func newFlags(mode string, o *runOpts) *flag.FlagSet {
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	fs.IntVar(&o.conc, "c", 64, "concurrent workers")
	fs.DurationVar(&o.dur, "d", 15*time.Second, "measured duration")
	fs.DurationVar(&o.warm, "warmup", 2*time.Second, "warm-up before the measured window (not counted)")
	return fs
}
