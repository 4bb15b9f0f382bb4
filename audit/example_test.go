package audit_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/dockca/dockca/audit"
)

// Example shows how `dockca audit` wires flags to the package: parse
// targets first (nothing is sent if they are refused), run, print, and
// map the outcome to the exit status.
func Example() {
	failOn, err := audit.ParseSeverity("high") // --fail-on
	if err != nil {
		os.Exit(audit.ExitError)
	}
	endpoints, err := audit.ParseTargets([]string{"127.0.0.1"}, audit.DefaultPorts) // TARGET..., --ports
	// A range over a /16 gives an error matching audit.ErrRangeTooLarge.
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(audit.ExitError)
	}
	var roots []byte                                              // the dockca root PEM from the CA home or --ca-url, if any
	o := audit.Options{Timeout: 3 * time.Second, Concurrency: 64} // --timeout, --concurrency
	if roots != nil {
		if o.Roots, err = audit.ParseRootsPEM(roots); err != nil {
			os.Exit(audit.ExitError)
		}
	}
	report, runErr := audit.Run(context.Background(), endpoints, o)
	if report != nil {
		_ = report.WriteTable(os.Stdout) // or WriteJSON with --json
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, runErr)
	}
	os.Exit(audit.ExitCode(report, runErr, failOn))
}
