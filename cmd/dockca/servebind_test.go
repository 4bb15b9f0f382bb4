package main

import (
	"crypto/sha256"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/dockca/dockca/store"
)

// TestServeThatCannotBindChangesNothing: a serve whose port is taken fails
// before it writes anything (before, it had issued and stored a service
// certificate, one per attempt).
func TestServeThatCannotBindChangesNothing(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	before, _ := os.ReadFile(store.Path(r.home()))
	for i := 0; i < 2; i++ {
		res := r.run("serve", "--listen", ln.Addr().String())
		if res.code != 1 || !strings.Contains(res.err, "address already in use") {
			t.Fatalf("serve on a taken port: %+v", res)
		}
	}
	after, _ := os.ReadFile(store.Path(r.home()))
	if sha256.Sum256(before) != sha256.Sum256(after) {
		t.Fatal("a failed serve changed the database")
	}
	if out := r.ok("ls", "--kind", "service"); strings.Contains(out, "service ") {
		t.Fatalf("a failed serve stored a service certificate:\n%s", out)
	}
}
