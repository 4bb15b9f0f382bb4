# smallstep's nosql links Badger, MySQL and Postgres drivers unless these
# tags leave them out; dockca keeps its CA in bbolt (or etcd).
TAGS := nobadger,nomysql,nopgx
GO   ?= go
DEMO ?= ./demo
# dockca version reports these; a plain go build falls back to the build
# info the go command embeds.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: build test serve demo demo-stop quickstart bench bench-stepca bench-etcd bench-crl load clean

build:
	$(GO) build -tags $(TAGS) -ldflags '$(LDFLAGS)' -o dockca ./cmd/dockca

# The test command of the README and of CI: installs dockerd, the docker
# CLI and openssl when missing (Debian, as root), vets, and runs every test,
# end-to-end ones against real dockerds included.
test:
	./scripts/test-deps.sh
	test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed" >&2; exit 1; }
	$(GO) vet -tags $(TAGS) ./...
	$(GO) test -tags $(TAGS) -race -count=1 -timeout 20m ./...

# The README's first command: build and run the CA service on the embedded
# default (bbolt under $(DEMO)/home, initialised on first start without a
# password: a development CA). It prints the URL, the root fingerprint and
# how to mint a token; stop it with Ctrl-C.
serve: build
	./dockca --home $(DEMO)/home serve --no-password --listen 127.0.0.1:8443

# The README's first path: the CA service (as make serve, in the
# background unless make serve already runs) and a throwaway dockerd on
# 127.0.0.1:2376 whose certificate comes from it; prints the lines that
# give a working `docker --context dockca-demo ps`. Needs root (dockerd).
# make demo-stop ends both; the CA stays in $(DEMO)/home.
demo: build
	./scripts/demo.sh start $(DEMO)

demo-stop:
	./scripts/demo.sh stop $(DEMO)

# The offline main job: a development CA under $(DEMO)/offline (apart from
# the service's $(DEMO)/home), a daemon and a client certificate, and how
# to start dockerd with them.
quickstart: build
	./scripts/quickstart.sh $(DEMO)/offline

bench:
	$(GO) test -tags $(TAGS) -run '^$$' -bench IssueFromCSR -benchtime 3s ./ca/
	$(GO) test -tags $(TAGS) -run '^$$' -bench Decision -benchtime 20000x ./authz/

# dockca serve against step-ca v0.30.2, same load generator, same run, at 64
# clients and at 1: prints both rates and their ratio. step-ca is built from
# its Go module into BENCH_CACHE (never committed).
BENCH_CACHE ?= $(CURDIR)/.cache/bench
STEPCA_VERSION := v0.30.2
STEPCA := $(BENCH_CACHE)/step-ca-$(STEPCA_VERSION)
$(STEPCA):
	mkdir -p $(BENCH_CACHE)
	CGO_ENABLED=0 GOBIN=$(BENCH_CACHE) $(GO) install github.com/smallstep/certificates/cmd/step-ca@$(STEPCA_VERSION)
	mv $(BENCH_CACHE)/step-ca $@
bench-stepca: build $(STEPCA)
	$(GO) run -tags $(TAGS) ./internal/issuebench compare -stepca $(STEPCA) -dockca ./dockca -c 64,1

# The same load on dockca serve over a fresh 3-member etcd cluster (Debian's
# etcd-server) beside dockca on bbolt and step-ca on bbolt, in one run.
ETCD ?= /usr/bin/etcd
bench-etcd: build $(STEPCA)
	test -x $(ETCD) || scripts/test-deps.sh
	$(GO) run -tags $(TAGS) ./internal/issuebench compare -stepca $(STEPCA) -dockca ./dockca -etcd $(ETCD) -c 64

# CRL generation and revocation with 100,000 revoked; ls on 10,000 and
# 1,000,000 records.
bench-crl:
	$(GO) test -tags $(TAGS) -run '^$$' -bench CRL100k -benchtime 5x ./ca/
	DOCKCA_LS_BENCH=1 $(GO) test -tags $(TAGS) -count=1 -run TestListScales -v -timeout 30m ./store/

# Load tests against real HTTPS and real dockerd; not part of make test.
load:
	DOCKCA_LOAD=1 $(GO) test -tags $(TAGS) -count=1 -run TestLoadSign -v ./serve/
	DOCKCA_AUTHZ_THROUGHPUT=1 $(GO) test -tags $(TAGS) -count=1 -run ThroughputRatio -v ./authz/

clean:
	rm -f dockca
