package serve

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxTrackedIPs bounds the limiter's memory: beyond it, idle entries are
// dropped first and, failing that, new addresses share one bucket.
const maxTrackedIPs = 10000

// ipLimiter is a token bucket per client IP.
type ipLimiter struct {
	mu       sync.Mutex
	r        rate.Limit
	burst    int
	buckets  map[string]*ipBucket
	overflow *rate.Limiter
}

type ipBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newIPLimiter(perSecond float64, burst int) *ipLimiter {
	return &ipLimiter{r: rate.Limit(perSecond), burst: burst, buckets: map[string]*ipBucket{},
		overflow: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

func (l *ipLimiter) allow(ip string) bool {
	now := time.Now()
	l.mu.Lock()
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= maxTrackedIPs {
			l.evict(now, time.Minute)
		}
		if len(l.buckets) >= maxTrackedIPs {
			l.mu.Unlock()
			return l.overflow.Allow()
		}
		b = &ipBucket{lim: rate.NewLimiter(l.r, l.burst)}
		l.buckets[ip] = b
	}
	b.seen = now
	l.mu.Unlock()
	return b.lim.AllowN(now, 1)
}

func (l *ipLimiter) evict(now time.Time, idle time.Duration) {
	for ip, b := range l.buckets {
		if now.Sub(b.seen) > idle {
			delete(l.buckets, ip)
		}
	}
}

// sweep drops idle buckets every interval until ctx ends.
func (l *ipLimiter) sweep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l.mu.Lock()
			l.evict(now, 5*time.Minute)
			l.mu.Unlock()
		}
	}
}
