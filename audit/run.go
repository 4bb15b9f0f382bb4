package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/internal/tlsbundle"
)

// Defaults for Options fields left zero.
const (
	DefaultTimeout     = 3 * time.Second
	DefaultConcurrency = 64
)

// connsPerEndpoint is the most connections one open endpoint costs (see the
// package doc); DefaultDeadline is derived from it.
const connsPerEndpoint = 4

// ErrIncomplete is wrapped by Run's error when some endpoints could not be
// audited (a name that does not resolve, the overall deadline): the audit
// fails closed rather than report a partial fleet as clean.
var ErrIncomplete = errors.New("audit incomplete")

// Options bound and inform a run. The CLI maps --timeout to Timeout and
// --concurrency to Concurrency; Roots come from the local CA home or
// --ca-url.
type Options struct {
	// Timeout bounds each connection: dial, handshake and requests.
	Timeout time.Duration
	// Deadline bounds the whole run; zero means DefaultDeadline.
	Deadline time.Duration
	// Concurrency is the most connections in flight at once.
	Concurrency int
	// Roots are the dockca root certificates. When nil the checks that need
	// them (cert-foreign-ca, client-ca-foreign, cert-chain-unverifiable)
	// are skipped.
	Roots []*x509.Certificate
}

// DefaultDeadline is the overall deadline for n endpoints when none is set:
// enough for every endpoint to be open and use all its connections for the
// full timeout, one batch of Concurrency endpoints after another, plus one
// timeout of slack. Closed ports answer at once, so real runs take far less.
func DefaultDeadline(n int, o Options) time.Duration {
	o = o.withDefaults()
	batches := (n + o.Concurrency - 1) / o.Concurrency
	return time.Duration(batches*connsPerEndpoint+1) * o.Timeout
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	return o
}

// ParseRootsPEM reads dockca root certificates from PEM (one or more
// CERTIFICATE blocks) for Options.Roots.
func ParseRootsPEM(data []byte) ([]*x509.Certificate, error) {
	roots, err := tlsbundle.Certs(data)
	if err != nil {
		return nil, fmt.Errorf("parse dockca root: %w", err)
	}
	return roots, nil
}

type scanner struct {
	timeout   time.Duration
	roots     []*x509.Certificate
	probeCert *tls.Certificate
	now       func() time.Time
	deadline  time.Time
}

// over reports whether the run's deadline has passed. ctx.Err() alone lags
// the deadline by however late its timer fires.
func (s *scanner) over(ctx context.Context) bool {
	return ctx.Err() != nil || !s.now().Before(s.deadline)
}

// Run audits endpoints (from ParseTargets) and returns the report. The
// report is returned even with an error: an error wrapping ErrIncomplete
// means some endpoints were not audited (their state says why); other
// errors mean nothing was audited. ctx cancels the run.
func Run(ctx context.Context, endpoints []Endpoint, o Options) (*Report, error) {
	o = o.withDefaults()
	if o.Deadline <= 0 {
		o.Deadline = DefaultDeadline(len(endpoints), o)
	}
	probeCert, err := newProbeCert()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	s := &scanner{timeout: o.Timeout, roots: o.Roots, probeCert: probeCert, now: time.Now, deadline: time.Now().Add(o.Deadline)}
	ctx, cancel := context.WithDeadline(ctx, s.deadline)
	defer cancel()

	results := make([]TargetResult, len(endpoints))
	findings := make([][]Finding, len(endpoints))
	jobs := make(chan int)
	var wg sync.WaitGroup
	// Each worker audits one endpoint at a time and an endpoint's
	// connections are made one after another, so workers bound the
	// connections in flight.
	for range min(o.Concurrency, len(endpoints)) {
		wg.Go(func() {
			for i := range jobs {
				ep := endpoints[i]
				if s.over(ctx) {
					results[i] = TargetResult{Target: ep.Host, Port: ep.Port, State: StateSkipped, Error: deadlineMsg(ctx)}
					continue
				}
				results[i], findings[i] = s.scan(ctx, ep)
				// Probes cut short by the deadline prove nothing; what
				// was found stays, but the endpoint counts as not audited.
				if s.over(ctx) && results[i].State == StateOpen {
					results[i].State, results[i].Error = StateError, deadlineMsg(ctx)
				}
			}
		})
	}
	for i := range endpoints {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	r := &Report{Targets: results}
	for _, fs := range findings {
		r.Findings = append(r.Findings, fs...)
	}
	r.sort()
	counts := r.Counts()
	if n := counts[StateError] + counts[StateSkipped]; n > 0 {
		why := ""
		if s.over(ctx) {
			why = fmt.Sprintf(" (%s after %s)", deadlineMsg(ctx), o.Deadline)
		}
		return r, fmt.Errorf("audit: %w: %d of %d endpoints not audited%s", ErrIncomplete, n, len(endpoints), why)
	}
	return r, nil
}

// scan audits one endpoint. Plain HTTP goes first because it tells the two
// protocols apart at once: a TLS server rejects "GET" within five bytes
// (Go's even answers with an HTTP 400), while a plain HTTP server can sit on
// a TLS ClientHello waiting for a newline until the timeout.
func (s *scanner) scan(ctx context.Context, ep Endpoint) (TargetResult, []Finding) {
	res := TargetResult{Target: ep.Host, Port: ep.Port}
	plain, plainErr, err := s.plainProbe(ctx, ep)
	if err != nil {
		res.State, res.Error = dialState(s.over(ctx), err)
		return res, nil
	}
	res.State = StateOpen
	if plain != nil && (plain.docker || plain.pingStatus != http.StatusBadRequest) {
		return plainResult(ep, res, plain)
	}
	first, err := s.tlsProbe(ctx, ep, nil, tls.VersionTLS13, true)
	switch {
	case err == nil && (first.sawCert || spokeTLS(first.handshakeErr)):
		return s.scanTLS(ctx, ep, res, first)
	case plain != nil:
		return plainResult(ep, res, plain)
	}
	res.Protocol = ProtoUnknown
	tlsErr := "connect: " + fmt.Sprint(err)
	if err == nil {
		tlsErr = first.failure()
	}
	res.Error = fmt.Sprintf("no HTTP answer (%v) and no TLS (%s)", plainErr, tlsErr)
	return res, nil
}

// plainResult reports a plain-HTTP endpoint: a Docker API there is
// unencrypted, and usable by anyone if it answers.
func plainResult(ep Endpoint, res TargetResult, ans *answer) (TargetResult, []Finding) {
	res.Protocol = ProtoHTTP
	res.Docker, res.Engine = ans.docker, ans.engine
	if !ans.docker {
		return res, nil
	}
	f := Finding{Target: ep.Host, Port: ep.Port, Detail: ans.describe()}
	if ans.ok() {
		f.Severity, f.ID, f.Finding = Critical, "plain-http-api", "plain-HTTP Docker API answers without authentication"
	} else {
		f.Severity, f.ID, f.Finding = High, "plain-http-unencrypted", "plain-HTTP Docker API (unencrypted)"
	}
	return res, []Finding{f}
}

func (s *scanner) scanTLS(ctx context.Context, ep Endpoint, res TargetResult, first *tlsOutcome) (TargetResult, []Finding) {
	var fs []Finding
	add := func(sev Severity, id, what, detail string) {
		fs = append(fs, Finding{Target: ep.Host, Port: ep.Port, Severity: sev, ID: id, Finding: what, Detail: detail})
	}
	res.Protocol = ProtoTLS
	res.TLSVersion = tlsVersionName(first.version)
	gate := first.alpn == api.GateALPN
	if gate {
		res.Service = "dockca gate"
	}
	mtls := false
	switch {
	case first.answer != nil:
		res.ClientCert = "not requested"
		how := "server does not request a client certificate"
		if first.requested {
			res.ClientCert = "optional"
			how = "server requests but does not require a client certificate"
		}
		res.Docker, res.Engine = first.answer.docker, first.answer.engine
		if !first.answer.docker {
			return res, nil // a TLS service, but not a Docker API
		}
		if first.answer.ok() {
			add(Critical, "tls-no-client-verify", "TLS Docker API accepts connections without a client certificate",
				how+"; "+first.answer.describe())
		} else {
			add(Medium, "tls-other-auth", "TLS Docker API without client certificates refuses requests",
				how+"; "+first.answer.describe())
		}
	case first.refused():
		res.ClientCert = "required"
		second, err := s.tlsProbe(ctx, ep, s.probeCert, tls.VersionTLS13, true)
		switch {
		case err != nil:
			add(Medium, "tls-inconclusive", "could not test whether the server trusts unknown client CAs",
				"connect with a self-signed client certificate: "+err.Error())
		case second.answer != nil:
			res.Docker, res.Engine = second.answer.docker, second.answer.engine
			if !second.answer.docker {
				return res, nil
			}
			if second.answer.ok() {
				add(Critical, "tls-untrusted-client", "TLS Docker API accepts a client certificate from an unknown CA",
					"a throwaway self-signed client certificate was accepted; "+second.answer.describe())
			} else {
				add(Medium, "tls-other-auth", "TLS Docker API accepts an unknown client CA but refuses requests",
					"a throwaway self-signed client certificate was accepted; "+second.answer.describe())
			}
		case second.refused():
			mtls = true
		default:
			add(Medium, "tls-inconclusive", "could not test whether the server trusts unknown client CAs",
				"with a self-signed client certificate: "+second.failure())
		}
	default:
		add(Medium, "tls-inconclusive", "could not tell whether the TLS server requires client certificates",
			"without a client certificate: "+first.failure())
	}
	if !first.sawCert {
		return res, fs
	}
	now := s.now()
	leaf := first.chain[0]
	fs = append(fs, certFindings(ep, leaf, now)...)

	legacy := uint16(0)
	if first.version != 0 && first.version < tls.VersionTLS12 {
		legacy = first.version
	} else if old, err := s.tlsProbe(ctx, ep, nil, tls.VersionTLS11, false); err == nil && old.sawCert {
		legacy = old.version
	}
	if legacy != 0 {
		add(High, "tls-legacy-version", "server accepts TLS below 1.2", "negotiated "+tls.VersionName(legacy))
	}

	identity := fmt.Sprintf("server certificate %s (serial %x), issuer %s, valid until %s",
		leaf.Subject, leaf.SerialNumber, leaf.Issuer, leaf.NotAfter.UTC().Format(time.RFC3339))
	if s.roots == nil {
		switch {
		case mtls && gate:
			add(Info, "gate-ok", "dockca gate: mutual TLS required, every request judged by dockca's policy", identity+"; issuer not checked: no dockca root given")
		case mtls:
			add(Info, "mtls-ok", "mutual TLS required", "issuer not checked: no dockca root given")
		}
		return res, fs
	}
	ca := caFindings(ep, first.chain, s.roots, first.requested, first.acceptable, now)
	fs = append(fs, ca.findings...)
	switch {
	case mtls && ca.issuedByUs && gate:
		add(Info, "gate-ok", "dockca gate: mutual TLS required, every request judged by dockca's policy, server certificate issued by this dockca CA", identity)
	case mtls && ca.issuedByUs:
		add(Info, "mtls-ok", "mutual TLS required and server certificate issued by this dockca CA",
			fmt.Sprintf("issuer %s", leaf.Issuer))
	}
	return res, fs
}

// dialState tells closed from filtered from unreachable: only an error
// that stops the audit of a target the admin named (a name that does not
// resolve, the overall deadline) makes the run incomplete.
func dialState(over bool, err error) (string, string) {
	var dnsErr *net.DNSError
	switch {
	case over:
		return StateError, "overall deadline reached"
	case errors.As(err, &dnsErr):
		return StateError, err.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return StateClosed, ""
	case isTimeout(err):
		return StateFiltered, ""
	}
	return StateUnreachable, err.Error()
}

// deadlineMsg says why an endpoint was not audited: the deadline, or the
// caller cancelling the run.
func deadlineMsg(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.Canceled) {
		return "audit cancelled"
	}
	return "overall deadline reached"
}
