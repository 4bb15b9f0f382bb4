package serve

import (
	"github.com/dockca/dockca/pki"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics live in a registry of their own, so two servers in one process
// (tests) do not collide and /metrics shows only this service.
type metrics struct {
	reg           *prometheus.Registry
	issued        *prometheus.CounterVec
	renewals      *prometheus.CounterVec
	revocations   prometheus.Counter
	tokenFailures *prometheus.CounterVec
	latency       *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockca_certificates_issued_total", Help: "Certificates issued for enrollment tokens, by kind.",
		}, []string{"kind"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockca_certificates_renewed_total", Help: "Certificates renewed over mutual TLS, by kind.",
		}, []string{"kind"}),
		revocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dockca_certificates_revoked_total", Help: "Certificates revoked through the service.",
		}),
		tokenFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockca_token_failures_total", Help: "Refused tokens, by reason (invalid, used).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dockca_http_request_duration_seconds", Help: "HTTPS API request latency, by route and status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "code"}),
	}
	m.reg.MustRegister(m.issued, m.renewals, m.revocations, m.tokenFailures, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, k := range []pki.Kind{pki.KindClient, pki.KindDaemon} {
		m.issued.WithLabelValues(string(k))
		m.renewals.WithLabelValues(string(k))
	}
	for _, r := range []string{"invalid", "used"} {
		m.tokenFailures.WithLabelValues(r)
	}
	return m
}
