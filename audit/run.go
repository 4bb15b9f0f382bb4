package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
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
	var roots []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse dockca root: %w", err)
		}
		roots = append(roots, c)
	}
	if len(roots) == 0 {
		return nil, errors.New("parse dockca root: no certificate in PEM data")
	}
	return roots, nil
}

type scanner struct {
	timeout   time.Duration
	roots     []*x509.Certificate
	probeCert *tls.Certificate
	now       func() time.Time
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
	s := &scanner{timeout: o.Timeout, roots: o.Roots, probeCert: probeCert, now: time.Now}
	ctx, cancel := context.WithTimeout(ctx, o.Deadline)
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
				if ctx.Err() != nil {
					results[i] = TargetResult{Target: ep.Host, Port: ep.Port, State: StateSkipped, Error: "overall deadline reached"}
					continue
				}
				results[i], findings[i] = s.scan(ctx, ep)
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
	if n := counts[StateError] + counts[StateSkipped]; n > 0 || ctx.Err() != nil {
		why := ""
		if ctx.Err() != nil {
			why = fmt.Sprintf(" (%v after %s)", context.Cause(ctx), o.Deadline)
		}
		return r, fmt.Errorf("audit: %w: %d of %d endpoints not audited%s", ErrIncomplete, n, len(endpoints), why)
	}
	return r, nil
}

// scan audits one endpoint: TLS first (a plain HTTP server answers a TLS
// ClientHello with an HTTP error, which is unambiguous), plain HTTP if the
// other side did not speak TLS.
func (s *scanner) scan(ctx context.Context, ep Endpoint) (TargetResult, []Finding) {
	res := TargetResult{Target: ep.Host, Port: ep.Port}
	first, err := s.tlsProbe(ctx, ep, nil, tls.VersionTLS13, true)
	if err != nil {
		res.State, res.Error = dialState(ctx, err)
		return res, nil
	}
	res.State = StateOpen
	if first.sawCert || spokeTLS(first.handshakeErr) {
		return s.scanTLS(ctx, ep, res, first)
	}
	return s.scanPlain(ctx, ep, res, first)
}

func (s *scanner) scanPlain(ctx context.Context, ep Endpoint, res TargetResult, first *tlsOutcome) (TargetResult, []Finding) {
	ans, err := s.plainProbe(ctx, ep)
	if err != nil {
		res.Protocol = ProtoUnknown
		res.Error = fmt.Sprintf("no TLS (%s) and no HTTP answer (%v)", first.failure(), err)
		if ctx.Err() != nil {
			res.State = StateError
		}
		return res, nil
	}
	res.Protocol = ProtoHTTP
	res.Docker, res.Engine = ans.docker, ans.engine
	if !ans.docker {
		return res, nil
	}
	f := Finding{Target: ep.Host, Port: ep.Port}
	if ans.ok() {
		f.Severity, f.ID, f.Finding = Critical, "plain-http-api", "plain-HTTP Docker API answers without authentication"
	} else {
		f.Severity, f.ID, f.Finding = High, "plain-http-unencrypted", "plain-HTTP Docker API (unencrypted)"
	}
	f.Detail = ans.describe()
	return res, []Finding{f}
}

func (s *scanner) scanTLS(ctx context.Context, ep Endpoint, res TargetResult, first *tlsOutcome) (TargetResult, []Finding) {
	var fs []Finding
	add := func(sev Severity, id, what, detail string) {
		fs = append(fs, Finding{Target: ep.Host, Port: ep.Port, Severity: sev, ID: id, Finding: what, Detail: detail})
	}
	res.Protocol = ProtoTLS
	res.TLSVersion = tlsVersionName(first.version)
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

	if s.roots == nil {
		if mtls {
			add(Info, "mtls-ok", "mutual TLS required", "issuer not checked: no dockca root given")
		}
		return res, fs
	}
	ca := caFindings(ep, first.chain, s.roots, first.requested, first.acceptable, now)
	fs = append(fs, ca.findings...)
	if mtls && ca.issuedByUs {
		add(Info, "mtls-ok", "mutual TLS required and server certificate issued by this dockca CA",
			fmt.Sprintf("issuer %s", leaf.Issuer))
	}
	return res, fs
}

// dialState tells closed from filtered from unreachable: only an error
// that stops the audit of a target the admin named (a name that does not
// resolve, the overall deadline) makes the run incomplete.
func dialState(ctx context.Context, err error) (string, string) {
	var dnsErr *net.DNSError
	switch {
	case ctx.Err() != nil:
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
