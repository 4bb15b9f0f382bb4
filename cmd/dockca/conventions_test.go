package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFlagAndCommand(t *testing.T) {
	r := newCLI(t)
	flag := r.runRaw("--version")
	cmd := r.runRaw("version")
	if flag.code != 0 || cmd.code != 0 || flag.out != cmd.out {
		t.Fatalf("--version %+v and version %+v differ", flag, cmd)
	}
	bi, _ := debug.ReadBuildInfo()
	var step string
	for _, d := range bi.Deps {
		if d.Path == smallstepModule {
			step = d.Version
		}
	}
	if step == "" {
		t.Fatal("the test binary's build info lacks smallstep")
	}
	for _, want := range []string{"dockca ", "(commit ", "go " + strings.TrimPrefix(runtime.Version(), "go") + "\n", "smallstep/certificates " + step + "\n"} {
		if !strings.Contains(cmd.out, want) {
			t.Errorf("version output lacks %q:\n%s", want, cmd.out)
		}
	}
	var v map[string]any
	out := r.ok("version", "--format", "{{json .}}")
	if err := json.Unmarshal([]byte(out), &v); err != nil || v["smallstep"] != step || v["go"] != runtime.Version() {
		t.Fatalf("version --format '{{json .}}': %v %s", err, out)
	}
	if got := r.ok("version", "--format", "{{.Smallstep}}"); got != step+"\n" {
		t.Fatalf("version --format {{.Smallstep}} = %q", got)
	}
}

func TestBuildVersion(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/dockca/dockca", Version: "(devel)"},
		Deps:      []*debug.Module{{Path: smallstepModule, Version: "v0.30.2"}},
		Settings:  []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}},
	}
	cases := []struct {
		name      string
		bi        *debug.BuildInfo
		ok        bool
		ldV, ldC  string
		want      versionInfo
		wantPrint string
	}{
		{"build info", bi, true, "", "", versionInfo{Version: "(devel)", Commit: "abc123", Modified: true, Go: "go1.26.8", Smallstep: "v0.30.2"},
			"dockca (devel) (commit abc123-modified)\ngo 1.26.8\nsmallstep/certificates v0.30.2\n"},
		{"Makefile ldflags win", bi, true, "v1.2.0-3-gabc", "def456", versionInfo{Version: "v1.2.0-3-gabc", Commit: "def456", Go: "go1.26.8", Smallstep: "v0.30.2"},
			"dockca v1.2.0-3-gabc (commit def456)\ngo 1.26.8\nsmallstep/certificates v0.30.2\n"},
		{"nothing known", nil, false, "", "", versionInfo{Version: "unknown", Commit: "unknown", Go: "unknown", Smallstep: "unknown"},
			"dockca unknown (commit unknown)\ngo unknown\nsmallstep/certificates unknown\n"},
	}
	for _, c := range cases {
		got := buildVersion(c.bi, c.ok, c.ldV, c.ldC)
		if got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
		var b strings.Builder
		writeVersion(&b, got)
		if b.String() != c.wantPrint {
			t.Errorf("%s: printed %q, want %q", c.name, b.String(), c.wantPrint)
		}
	}
}

func TestHelpCommand(t *testing.T) {
	r := newCLI(t)
	for _, path := range [][]string{{"issue", "client"}, {"token", "create"}, {"ls"}, {"context"}} {
		help := r.runRaw(append([]string{"help"}, path...)...)
		flag := r.runRaw(append(path, "--help")...)
		if help.code != 0 || help.out != flag.out || !strings.Contains(help.out, "dockca "+strings.Join(path, " ")) {
			t.Errorf("help %v = %+v, --help = %+v", path, help, flag)
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {}} {
		if res := r.runRaw(args...); res.code != 0 || !strings.Contains(res.out, "COMMANDS:") || !strings.Contains(res.out, "--version") {
			t.Errorf("dockca %v: %+v", args, res)
		}
	}
}

// Unknown commands are usage errors naming what was probably meant.
func TestDidYouMean(t *testing.T) {
	r := newCLI(t)
	cases := []struct{ args, want string }{
		{"lss", `dockca: unknown command "lss"; did you mean "ls"? (see 'dockca --help')` + "\n"},
		{"isue client bob", `dockca: unknown command "isue"; did you mean "issue"? (see 'dockca --help')` + "\n"},
		{"revok x", `dockca: unknown command "revok"; did you mean "revoke"? (see 'dockca --help')` + "\n"},
		{"context lss", `dockca: unknown command "lss" for "context"; did you mean "ls"? (see 'dockca context --help')` + "\n"},
		{"token craete", `dockca: unknown command "craete" for "token"; did you mean "create"? (see 'dockca token --help')` + "\n"},
		{"help isue", `dockca: unknown command "isue"; did you mean "issue"? (see 'dockca --help')` + "\n"},
		{"frobnicate", `dockca: unknown command "frobnicate" (see 'dockca --help')` + "\n"},
		{"completion tcsh", `dockca: completion: unknown shell "tcsh" (use bash, zsh or fish)` + "\n"},
	}
	for _, c := range cases {
		res := r.run(strings.Fields(c.args)...)
		if res.code != 2 || res.err != c.want || res.out != "" {
			t.Errorf("dockca %s: exit %d, stderr %q, stdout %q; want 2, %q", c.args, res.code, res.err, res.out, c.want)
		}
	}
}

// The bash script completes through the real binary in a real bash, and a
// completion request never runs the command it completes.
func TestBashCompletion(t *testing.T) {
	bin := buildDockca(t)
	r := newCLI(t)
	initCA(t, r)
	r.ok("issue", "client", "alice", "--out", filepath.Join(t.TempDir(), "a"))
	script := filepath.Join(t.TempDir(), "dockca.bash")
	if err := os.WriteFile(script, []byte(r.ok("completion", "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		sh := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _dockca_complete; echo "${COMPREPLY[*]}"`
		cmd := exec.Command("bash", append([]string{"-c", sh, "bash", script, "dockca"}, words...)...)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"),
			"DOCKCA_HOME="+r.home(), "DOCKCA_PASSWORD="+r.env["DOCKCA_PASSWORD"])
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	cases := []struct {
		words []string
		want  string
	}{
		{[]string{"iss"}, "issue"},
		{[]string{"issue", ""}, "daemon client"},
		{[]string{"ls", "--j"}, "--json"},
		{[]string{"token", "c"}, "create"},
		{[]string{"revoke", "alice", ""}, ""},
		{[]string{"revoke", "alice", "--"}, "--reason --help"},
		{[]string{"revoke", "--", "alice", ""}, ""},
	}
	for _, c := range cases {
		if got := complete(c.words...); got != c.want {
			t.Errorf("complete dockca %q = %q, want %q", c.words, got, c.want)
		}
	}
	if list := listJSON(t, r, "--status", "valid"); len(list) != 1 {
		t.Fatalf("completing a revoke command revoked: %v", list)
	}
	for _, sh := range []string{"zsh", "fish"} {
		out := r.ok("completion", sh)
		if !strings.Contains(out, "dockca") || !strings.Contains(out, "complet") {
			t.Errorf("completion %s: %s", sh, out)
		}
	}
	if fish := r.ok("completion", "fish"); !strings.Contains(fish, "complete -c dockca") || !strings.Contains(fish, "revoke") {
		t.Errorf("fish completion lacks the commands:\n%s", fish)
	}
}
