package authz

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Freshness says how current a revocation source's data is. A plugin that
// enforces an old revocation list lets revoked certificates in, so the age
// is logged when it grows and shown by `dockca authz status`.
type Freshness struct {
	// Mode is "local" (the dockca home on this host) or "remote" (the
	// service's CRL over HTTPS).
	Mode string `json:"mode"`
	// Source names where the data comes from now: the database file, the
	// service's admin socket, or the service's URL.
	Source string `json:"source"`
	// ConfirmedAt is when the data was last confirmed current.
	ConfirmedAt time.Time `json:"confirmed_at"`
	// Stale is set when the last attempt to confirm it failed; Error says
	// why.
	Stale bool   `json:"stale"`
	Error string `json:"error,omitempty"`
	// MaxStale is how old the data may grow before TLS requests are
	// denied (a Go duration).
	MaxStale string `json:"max_stale"`
}

// FreshnessReporter is implemented by revocation sources that can say how
// current they are. Freshness may refresh the data first (local mode
// checks the database, which is cheap).
type FreshnessReporter interface {
	Freshness(ctx context.Context) Freshness
}

// staleWarner logs a warning when revocation data turns stale, again every
// staleWarnEvery while it stays stale, and once when it is current again.
type staleWarner struct {
	log *slog.Logger

	mu       sync.Mutex
	stale    bool
	lastWarn time.Time
}

const staleWarnEvery = time.Minute

func (w *staleWarner) observe(now time.Time, f Freshness) {
	if w == nil || w.log == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !f.Stale {
		if w.stale {
			w.log.Info("revocation data is current again", "source", f.Source)
		}
		w.stale = false
		return
	}
	if !w.stale || now.Sub(w.lastWarn) >= staleWarnEvery {
		w.log.Warn("revocation data is stale: revocations made since it was last confirmed are not enforced",
			"source", f.Source, "age", now.Sub(f.ConfirmedAt).Round(time.Second).String(),
			"confirmed_at", f.ConfirmedAt.UTC().Format(time.RFC3339), "error", f.Error)
		w.lastWarn = now
	}
	w.stale = true
}

// RunPolicyReload calls reload every `every` (default 30s) until ctx ends
// and puts each policy it returns in force; a failed reload keeps the
// current policy and is logged once until a reload works again.
func (a *Authorizer) RunPolicyReload(ctx context.Context, reload func(context.Context) (*Policy, string, error), every time.Duration, log *slog.Logger) {
	if reload == nil {
		return
	}
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p, source, err := reload(ctx)
		switch {
		case err != nil && !failing:
			failing = true
			if log != nil {
				log.Warn("the CA's stored policy could not be read; the current one stays in force", "err", err)
			}
		case err == nil:
			if failing && log != nil {
				log.Info("the CA's stored policy is read again", "source", source)
			}
			failing = false
			if cur := a.policy.Load(); cur.source != source {
				a.SetPolicy(p, source)
			}
		}
	}
}
