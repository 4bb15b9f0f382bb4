package enroll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// ErrExpired means the certificate expired before it could be renewed:
// only a new enrollment (a new token) helps.
var ErrExpired = errors.New("the certificate has expired; enroll again with a new token")

// WatchOptions configure RenewDir and Watch.
type WatchOptions struct {
	Dir    string
	CAURLs []string // override the directory's recorded CA URLs
	// Exec runs through /bin/sh -c after each renewal, with
	// DOCKCA_CERT_DIR and DOCKCA_SERIAL set (e.g. systemctl restart docker).
	Exec string
	// BeforeExec, when set, runs before each Exec (the CLI checks there
	// that a dockerd restart keeps containers running).
	BeforeExec func()
	Rekey      bool
	KeyType    pki.KeyType
	// Fraction of the lifetime at which to renew; default 2/3. Jitter
	// (default 0.05) renews up to that fraction of the lifetime earlier, so
	// a fleet enrolled together does not renew together.
	Fraction, Jitter float64
	// MinBackoff and MaxBackoff bound the retry delay while the CA is
	// unreachable; defaults 5 s and 5 min.
	MinBackoff, MaxBackoff time.Duration
	// Force makes RenewDir renew whether due or not; Within is how close
	// to expiry a certificate is due (zero: the last third of its
	// lifetime). Watch ignores both: it renews at Fraction.
	Force  bool
	Within time.Duration
	// RevokeOld revokes each replaced certificate at the service (reason
	// superseded) once its renewal is written.
	RevokeOld bool
	// MaxRenewals stops Watch after that many renewals (0: never).
	MaxRenewals int
	Logger      *slog.Logger
	// Stdout and Stderr receive the hook's output.
	Stdout, Stderr io.Writer
}

func (o *WatchOptions) defaults() {
	if o.Fraction <= 0 || o.Fraction > 1 {
		o.Fraction = 2.0 / 3
	}
	if o.Jitter < 0 || o.Jitter >= o.Fraction {
		o.Jitter = 0
	} else if o.Jitter == 0 {
		o.Jitter = 0.05
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 5 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Minute, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
}

// NotDueError is RenewDir's answer for a certificate that is not due for
// renewal (and o.Force was not set): nothing was changed.
type NotDueError struct {
	Serial         string
	NotAfter, From time.Time
}

func (e *NotDueError) Error() string {
	return fmt.Sprintf("certificate %s is not due for renewal: it expires %s, due from %s",
		e.Serial, e.NotAfter.UTC().Format(time.RFC3339), e.From.UTC().Format(time.RFC3339))
}

// RenewDir renews the certificate in o.Dir, writes the result and runs
// the hook. Unless o.Force, a certificate that is not yet due (see
// tlsbundle.Due) is left alone and a *NotDueError returned, after Check
// has found nothing that would stop its renewal later.
func RenewDir(ctx context.Context, o WatchOptions) (*Result, error) {
	o.defaults()
	d, err := LoadDir(o.Dir)
	if err != nil {
		return nil, err
	}
	if due, from := tlsbundle.Due(d.Leaf.NotBefore, d.Leaf.NotAfter, time.Now(), o.Within); !due && !o.Force {
		// Not due, but say so only if it could be renewed when due: a
		// revoked certificate or an untrusted CA must not read as fine.
		if err := Check(ctx, o); err != nil && !errors.Is(err, ErrUnreachable) {
			return nil, err
		}
		return nil, &NotDueError{Serial: pki.FormatSerial(d.Leaf.SerialNumber), NotAfter: d.Leaf.NotAfter, From: from}
	}
	return renew(ctx, d, o)
}

// ErrUnreachable marks a failure to reach the service (network, timeout,
// the service's own 5xx): retrying may help.
var ErrUnreachable = errors.New("the CA service is unreachable")

// Check verifies, without renewing, that the certificate in o.Dir can be
// renewed: it loads, it has not expired, the directory records a CA URL
// (or o.CAURLs name some), the service at that URL presents the pinned
// root, and its CRL does not list the certificate. A failure that
// retrying cannot fix is returned as is; a service that cannot be reached
// is returned wrapped in ErrUnreachable.
func Check(ctx context.Context, o WatchOptions) error {
	d, err := LoadDir(o.Dir)
	if err != nil {
		return err
	}
	if !time.Now().Before(d.Leaf.NotAfter) {
		return ErrExpired
	}
	c, err := d.Client(o.CAURLs)
	if err != nil {
		return err
	}
	defer c.hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	crl, _, err := c.crlAndIssuer(ctx)
	if err != nil {
		if unreachable(err) {
			return fmt.Errorf("%w: %s: %v", ErrUnreachable, c.URL(), err)
		}
		return fmt.Errorf("the CA at %s cannot renew %s: %w", c.URL(), o.Dir, err)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(d.Leaf.SerialNumber) == 0 {
			return fmt.Errorf("certificate %s in %s has been revoked: enroll again with a new token", pki.FormatSerial(d.Leaf.SerialNumber), o.Dir)
		}
	}
	return nil
}

// unreachable tells network failures, timeouts and server-side errors
// (worth retrying) from refusals, such as a service that does not present
// the pinned root (not worth it).
func unreachable(err error) bool {
	var op *net.OpError
	var se *api.StatusError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return true
	case errors.As(err, &se):
		return se.Status >= 500 || se.Status == http.StatusTooManyRequests
	case errors.As(err, &op):
		return op.Op == "dial" || op.Op == "read" || op.Op == "write"
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func renew(ctx context.Context, d *Dir, o WatchOptions) (*Result, error) {
	if !time.Now().Before(d.Leaf.NotAfter) {
		return nil, ErrExpired
	}
	c, err := d.Client(o.CAURLs)
	if err != nil {
		return nil, err
	}
	defer c.hc.CloseIdleConnections()
	res, err := c.Renew(ctx, d.Cert, o.Rekey, o.KeyType)
	if err != nil {
		return nil, err
	}
	if err := WriteDir(d.Path, c, res); err != nil {
		return nil, err
	}
	o.Logger.Info("certificate renewed", "dir", d.Path, "serial", res.Resp.Serial, "name", res.Resp.Name,
		"not_after", res.Leaf.NotAfter, "rekeyed", res.KeyPEM != nil)
	runHook(ctx, o, res)
	if o.RevokeOld {
		old := pki.FormatSerial(d.Leaf.SerialNumber)
		if _, err := c.Revoke(ctx, d.Cert, "superseded"); err != nil {
			return res, fmt.Errorf("renewed (serial %s), but revoking the old certificate %s failed: %w", res.Resp.Serial, old, err)
		}
		o.Logger.Info("old certificate revoked", "serial", old, "reason", "superseded")
	}
	return res, nil
}

func runHook(ctx context.Context, o WatchOptions, res *Result) {
	if o.Exec == "" {
		return
	}
	if o.BeforeExec != nil {
		o.BeforeExec()
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", o.Exec)
	cmd.Env = append(os.Environ(), "DOCKCA_CERT_DIR="+o.Dir, "DOCKCA_SERIAL="+res.Resp.Serial)
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	if err := cmd.Run(); err != nil {
		o.Logger.Error("renewal hook failed", "exec", o.Exec, "err", err)
		return
	}
	o.Logger.Info("renewal hook ran", "exec", o.Exec)
}

// permanent reports errors retrying cannot fix: the CA refused the
// certificate (revoked, foreign) or the certificate expired.
func permanent(err error) bool {
	return errors.Is(err, ErrExpired) || errors.Is(err, ErrFingerprintMismatch) ||
		api.IsStatus(err, http.StatusUnauthorized, http.StatusForbidden, http.StatusBadRequest)
}

// Watch keeps the certificate in o.Dir fresh until ctx ends: it renews at
// o.Fraction of the lifetime (minus jitter), retries with exponential
// backoff while the CA is unreachable, and stops with an error only when
// renewal can no longer succeed.
func Watch(ctx context.Context, o WatchOptions) error {
	o.defaults()
	// Fail at once what would only fail at the first renewal, months from
	// now: no CA URL, an untrusted service, a revoked certificate.
	if err := Check(ctx, o); err != nil {
		if !errors.Is(err, ErrUnreachable) {
			return fmt.Errorf("cannot renew %s: %w", o.Dir, err)
		}
		o.Logger.Warn("the CA cannot be reached now; renewals will be retried", "dir", o.Dir, "err", err)
	}
	backoff := o.MinBackoff
	renewals := 0
	for {
		d, err := LoadDir(o.Dir)
		if err != nil {
			return err
		}
		life := d.Leaf.NotAfter.Sub(d.Leaf.NotBefore)
		at := d.Leaf.NotBefore.Add(time.Duration(float64(life) * o.Fraction))
		if o.Jitter > 0 {
			at = at.Add(-time.Duration(rand.Float64() * o.Jitter * float64(life)))
		}
		if wait := time.Until(at); wait > 0 {
			o.Logger.Info("next renewal scheduled", "dir", o.Dir, "serial", fmt.Sprintf("%x", d.Leaf.SerialNumber),
				"at", at.UTC().Format(time.RFC3339), "not_after", d.Leaf.NotAfter.UTC().Format(time.RFC3339))
			if err := sleep(ctx, wait); err != nil {
				return nil
			}
		}
		if res, err := renew(ctx, d, o); err != nil && res != nil {
			// Renewed; only revoking the old certificate failed. Retrying
			// would renew again, so report it and carry on.
			o.Logger.Error("renewal written, but a follow-up failed", "dir", o.Dir, "err", err)
		} else if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if permanent(err) {
				return fmt.Errorf("renewal of %s failed and retrying will not help: %w", o.Dir, err)
			}
			wait := min(backoff, max(time.Until(d.Leaf.NotAfter), time.Second))
			o.Logger.Warn("renewal failed, the CA may be unreachable; will retry", "dir", o.Dir, "retry_in", wait.String(),
				"expires_in", time.Until(d.Leaf.NotAfter).Round(time.Second).String(), "err", err)
			if err := sleep(ctx, wait); err != nil {
				return nil
			}
			backoff = min(backoff*2, o.MaxBackoff)
			continue
		}
		backoff = o.MinBackoff
		renewals++
		if o.MaxRenewals > 0 && renewals >= o.MaxRenewals {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
