package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// readmeFirstBlocks returns the command lines of the README's "Two
// commands" section: the commands of its first sh block (comments cut)
// and the lines of its second, the example of what make demo prints.
func readmeFirstBlocks(t *testing.T) (commands, pasted []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Two commands")
	if !ok {
		t.Fatal("README.md has no 'Two commands' section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks [][]string
	var cur []string
	in := false
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			in, cur = true, nil
		case strings.HasPrefix(line, "```") && in:
			in = false
			blocks = append(blocks, cur)
		case in:
			cur = append(cur, line)
		}
	}
	if len(blocks) < 2 {
		t.Fatalf("the 'Two commands' section has %d sh blocks, want 2", len(blocks))
	}
	for _, l := range blocks[0] {
		cmd, _, _ := strings.Cut(l, "#")
		commands = append(commands, strings.TrimSpace(cmd))
	}
	return commands, blocks[1]
}

// TestReadmeFirstPath is issue 10, section 3: from a clone, `make demo` as
// the README says, then exactly the lines it prints, give a working
// `docker --context … ps` against a real dockerd that trusts the demo CA;
// the README's example of those lines is the same lines with placeholders;
// make quickstart does not collide with the running service; and the stop
// line it prints stops everything.
func TestReadmeFirstPath(t *testing.T) {
	dockerdtest.Require(t)
	commands, example := readmeFirstBlocks(t)
	if len(commands) == 0 || commands[0] != "make demo" {
		t.Fatalf("the README's first command is %q, want make demo", commands)
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	demo := filepath.Join(dockerdtest.ShortTempDir(t), "demo")
	caPort := strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1"))
	dockerPort := strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1"))
	env := append(dockerdtest.CleanEnv(), "DEMO="+demo, "DEMO_CA_LISTEN=127.0.0.1:"+caPort, "DEMO_DOCKER_PORT="+dockerPort,
		"DOCKER_CONFIG="+t.TempDir())
	sh := func(script string) (string, error) {
		cmd := exec.Command("bash", "-ec", script)
		cmd.Dir, cmd.Env = repo, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if out, err := sh("./scripts/demo.sh stop " + demo); err != nil {
			t.Errorf("demo stop: %v\n%s", err, out)
		}
	})

	out, err := sh(commands[0])
	if err != nil {
		t.Fatalf("%s: %v\n%s", commands[0], err, out)
	}
	// The lines it prints to paste: indented, after the "Get a docker
	// context" line; then the stop line.
	var paste []string
	var stop string
	_, rest, ok := strings.Cut(out, "Get a docker context")
	if !ok {
		t.Fatalf("make demo printed no lines to paste:\n%s", out)
	}
	for _, l := range strings.Split(rest, "\n")[1:] {
		if s, ok := strings.CutPrefix(l, "  "); ok {
			paste = append(paste, s)
		}
		if s, ok := strings.CutPrefix(l, "Stop the demo: "); ok {
			stop = s
		}
	}
	if len(paste) != 3 || stop == "" {
		t.Fatalf("make demo printed:\n%s", out)
	}

	// The README shows the same lines, with placeholders for what varies.
	var fingerprint string
	for _, f := range strings.Fields(paste[1]) {
		if len(f) == 64 {
			fingerprint = f
		}
	}
	fill := strings.NewReplacer("/path/to/demo/home", filepath.Join(demo, "home"), "ROOT_SHA256", fingerprint,
		"127.0.0.1:2376", "127.0.0.1:"+dockerPort, "127.0.0.1:8443", "127.0.0.1:"+caPort)
	if len(example) != len(paste) {
		t.Fatalf("README example %q, printed %q", example, paste)
	}
	for i := range example {
		if got := fill.Replace(example[i]); got != paste[i] {
			t.Errorf("README line %d:\n%s\nprinted:\n%s", i+1, got, paste[i])
		}
	}

	// Paste them.
	got, err := sh(strings.Join(paste, "\n"))
	if err != nil || !strings.Contains(got, "CONTAINER ID") {
		t.Fatalf("the printed lines failed: %v\n%s\n%s", err, strings.Join(paste, "\n"), got)
	}
	// The token's own hints name the binary as it was run.
	if !strings.Contains(got, "./dockca context add dockca-demo") {
		t.Errorf("token create's hint does not say ./dockca:\n%s", got)
	}
	// So does the service's banner (make demo started it as ./dockca).
	if log, _ := os.ReadFile(filepath.Join(demo, "run", "serve.log")); !strings.Contains(string(log), "Mint a one-time token:  ./dockca --home") {
		t.Errorf("the service's banner does not say ./dockca:\n%s", log)
	}
	// make quickstart next to the running service: its own home.
	if out, err := sh("make quickstart"); err != nil {
		t.Fatalf("make quickstart while the demo service runs: %v\n%s", err, out)
	}
	// The stop line stops dockerd and the service.
	if out, err := sh(stop); err != nil || !strings.Contains(out, "stopped dockerd") || !strings.Contains(out, "stopped dockca serve") {
		t.Fatalf("%s: %v\n%s", stop, err, out)
	}
	if out, err := sh("docker --context dockca-demo ps"); err == nil {
		t.Fatalf("the daemon still answers after %s:\n%s", stop, out)
	}
}
