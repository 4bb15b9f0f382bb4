# smallstep's nosql links Badger, MySQL and Postgres drivers unless these
# tags leave them out; dockca keeps everything in one bbolt file.
TAGS := nobadger,nomysql,nopgx
GO   ?= go
DEMO ?= ./demo

.PHONY: build test quickstart vet bench clean

build:
	$(GO) build -tags $(TAGS) -o dockca ./cmd/dockca

# The test command of the README and of CI: installs dockerd, the docker
# CLI and openssl when missing (Debian, as root), vets, and runs every test,
# end-to-end ones against real dockerds included.
test:
	./scripts/test-deps.sh
	test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed" >&2; exit 1; }
	$(GO) vet -tags $(TAGS) ./...
	$(GO) test -tags $(TAGS) -count=1 -timeout 20m ./...

# The README's first command: build, create a development CA under
# $(DEMO), issue a daemon and a client certificate, say how to use them.
quickstart: build
	./scripts/quickstart.sh $(DEMO)

bench:
	$(GO) test -tags $(TAGS) -run '^$$' -bench . -benchtime 3s ./ca/

clean:
	rm -f dockca
