package enroll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
)

// ErrExpired means the certificate expired before it could be renewed:
// only a new enrollment (a new token) helps.
var ErrExpired = errors.New("the certificate has expired; enroll again with a new token")

// WatchOptions configure RenewDir and Watch.
type WatchOptions struct {
	Dir   string
	CAURL string // overrides the directory's recorded CA URL
	// Exec runs through /bin/sh -c after each renewal, with
	// DOCKCA_CERT_DIR and DOCKCA_SERIAL set (e.g. systemctl restart docker).
	Exec    string
	Rekey   bool
	KeyType ca.KeyType
	// Fraction of the lifetime at which to renew; default 2/3. Jitter
	// (default 0.05) renews up to that fraction of the lifetime earlier, so
	// a fleet enrolled together does not renew together.
	Fraction, Jitter float64
	// MinBackoff and MaxBackoff bound the retry delay while the CA is
	// unreachable; defaults 5 s and 5 min.
	MinBackoff, MaxBackoff time.Duration
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

// RenewDir renews the certificate in o.Dir now, writes the result and runs
// the hook.
func RenewDir(ctx context.Context, o WatchOptions) (*Result, error) {
	o.defaults()
	d, err := LoadDir(o.Dir)
	if err != nil {
		return nil, err
	}
	return renew(ctx, d, o)
}

func renew(ctx context.Context, d *Dir, o WatchOptions) (*Result, error) {
	if !time.Now().Before(d.Leaf.NotAfter) {
		return nil, ErrExpired
	}
	c, err := d.Client(o.CAURL)
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
	return res, nil
}

func runHook(ctx context.Context, o WatchOptions, res *Result) {
	if o.Exec == "" {
		return
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
		if _, err := renew(ctx, d, o); err != nil {
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
