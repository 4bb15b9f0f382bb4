// Command dockca is a small certificate authority for the Docker Engine
// API: it issues and revokes daemon and client certificates, keeps every
// one of them in a bbolt database, and writes what dockerd and the docker
// CLI need to use them. This package only wires flags to the ca, store
// and contexts packages; the work is done there.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, newSystemEnv())
	stop()
	os.Exit(code)
}
