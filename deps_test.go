package dockca_test

// The direction of dependencies (commands -> capabilities -> ca -> store)
// is checked here, on the real import graph: the client-side packages run
// on hosts that hold no CA, so they must not link the authority, the
// database or smallstep's authority, and package pki, which everyone
// shares, must stay a leaf.

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/dockca/dockca"

// clientPackages must not depend on forbidden.
var clientPackages = []string{"enroll", "contexts", "daemonsetup", "authz", "gate", "pki"}

// forbidden are import-path prefixes: the database (bbolt, etcd's client,
// package store),
// the authority (package ca, smallstep's certificates module) and the
// packages that compose them (admin, serve).
var forbidden = []string{
	"go.etcd.io/bbolt",
	"go.etcd.io/etcd/",
	"github.com/smallstep/certificates",
	module + "/ca",
	module + "/store",
	module + "/admin",
	module + "/serve",
}

func isForbidden(p string) bool {
	for _, f := range forbidden {
		if p == f || strings.HasPrefix(p, f+"/") {
			return true
		}
	}
	return false
}

// importGraph runs go list -deps on pkgs and returns each package's
// imports.
func importGraph(t *testing.T, pkgs ...string) map[string][]string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"list", "-deps", "-tags", "nobadger,nomysql,nopgx", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}"}
	for _, p := range pkgs {
		args = append(args, "./"+p)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(goCmd, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	g := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			g[f[0]] = f[1:]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return g
}

// chainTo returns the import chain from root to the first forbidden
// package it reaches (breadth first, so the shortest), or nil.
func chainTo(g map[string][]string, root string) []string {
	parent := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if isForbidden(p) {
			var chain []string
			for q := p; q != ""; q = parent[q] {
				chain = append([]string{q}, chain...)
			}
			return chain
		}
		for _, imp := range g[p] {
			if _, seen := parent[imp]; !seen {
				parent[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return nil
}

func TestClientPackagesLinkNoAuthorityOrDatabase(t *testing.T) {
	g := importGraph(t, clientPackages...)
	for _, p := range clientPackages {
		root := module + "/" + p
		if _, ok := g[root]; !ok {
			t.Fatalf("go list did not report %s", root)
		}
		if chain := chainTo(g, root); chain != nil {
			t.Errorf("%s depends on %s: %s", root, chain[len(chain)-1], strings.Join(chain, " -> "))
		}
	}
}

// pki imports only the standard library and go.step.sm/crypto (key
// generation, token claims): it is the vocabulary, below everything.
func TestPKIIsALeaf(t *testing.T) {
	g := importGraph(t, "pki")
	for _, imp := range g[module+"/pki"] {
		std := !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")
		if !std && !strings.HasPrefix(imp, "go.step.sm/crypto/") && !strings.HasPrefix(imp, "golang.org/x/") {
			t.Errorf("pki imports %s; it may import only the standard library, golang.org/x and go.step.sm/crypto", imp)
		}
	}
}

// The check itself must catch a violation: the authorization plugin's
// command package links the database through admin.
func TestChainToFindsAViolation(t *testing.T) {
	g := importGraph(t, "cmd/dockca")
	chain := chainTo(g, module+"/cmd/dockca")
	if len(chain) < 2 || !isForbidden(chain[len(chain)-1]) {
		t.Fatalf("no forbidden package found from cmd/dockca: %v", chain)
	}
}
