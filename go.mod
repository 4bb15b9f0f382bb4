module github.com/dockca/dockca

go 1.26.8

require (
	github.com/containerd/errdefs v1.0.0
	github.com/docker/cli v29.9.3+incompatible
	golang.org/x/sys v0.50.0
)

require (
	github.com/docker/docker-credential-helpers v0.9.13 // indirect
	github.com/fvbommel/sortorder v1.2.1 // indirect
	github.com/moby/sys/atomicwriter v0.1.0 // indirect
	github.com/moby/sys/sequential v0.6.0 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/sirupsen/logrus v1.10.2 // indirect
	gotest.tools/v3 v3.5.2 // indirect
)
