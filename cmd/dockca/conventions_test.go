package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
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
		{"ls --jsn", `dockca: unknown flag -jsn; did you mean --json?` + "\n"},
		{"issue client bob --rol admin", `dockca: unknown flag -rol; did you mean --role?` + "\n"},
		{"ls --frobnicate", `dockca: unknown flag -frobnicate` + "\n"},
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
		{[]string{"completion", ""}, "bash zsh fish"},
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

// Serial prefixes work wherever a serial does, locally and through a
// running service's admin socket; an ambiguous one lists the matches and
// changes nothing.
func TestSerialPrefixes(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	r.ok("issue", "client", "alice", "--out", filepath.Join(dir, "a"))
	r.ok("issue", "client", "bob", "--out", filepath.Join(dir, "b"))
	var alice, bob string
	for _, e := range listJSON(t, r) {
		if e["name"] == "alice" {
			alice = e["serial"].(string)
		} else {
			bob = e["serial"].(string)
		}
	}
	if out := r.ok("show", "--format", "{{.Name}}", strings.ToUpper(alice[:10])); out != "alice\n" {
		t.Fatalf("show by prefix: %q", out)
	}
	// A second record sharing alice's first 8 digits.
	twin := alice[:8] + strings.Repeat("0", len(alice)-9) + "1"
	if twin == alice {
		twin = alice[:8] + strings.Repeat("0", len(alice)-9) + "2"
	}
	st, err := store.Open(store.Path(r.home()), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	err = st.PutCertificate(context.Background(), &store.Certificate{Serial: twin, Name: "mallory", Kind: pki.KindClient,
		NotBefore: now, NotAfter: now.Add(time.Hour), IssuedAt: now, DER: []byte{1}})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	ambiguous := func(via string) {
		t.Helper()
		for _, cmd := range [][]string{{"revoke", bob, alice[:8]}, {"show", alice[:8]}} {
			res := r.run(cmd...)
			want := fmt.Sprintf("serial prefix %q matches more than one certificate: ", alice[:8])
			if res.code != 1 || !strings.Contains(res.err, want) || !strings.Contains(res.err, alice) || !strings.Contains(res.err, twin) ||
				!strings.Contains(res.err, `"mallory"`) || strings.Count(res.err, "\n") != 1 || res.out != "" {
				t.Errorf("%s: dockca %v: %+v", via, cmd, res)
			}
		}
		if n := len(listJSON(t, r, "--status", "revoked")); n != 0 {
			t.Fatalf("%s: an ambiguous prefix revoked %d certificates", via, n)
		}
	}
	ambiguous("local")

	// The same through dockca serve's admin socket.
	serveInProcess(t, r, "127.0.0.1:0")
	ambiguous("admin socket")
	if out := r.ok("revoke", alice[:10]); !strings.Contains(out, alice) || strings.Contains(out, twin) {
		t.Fatalf("revoke by a unique prefix through the service: %s", out)
	}
	if out := r.ok("ls", "-q", "--status", "revoked"); out != alice+"\n" {
		t.Fatalf("ls -q --status revoked: %q, want %s", out, alice)
	}
}

func TestListOutputOptions(t *testing.T) {
	r := newCLI(t)
	initCA(t, r)
	dir := t.TempDir()
	r.ok("issue", "client", "alice", "--out", filepath.Join(dir, "a"))
	r.ok("issue", "daemon", "h1.example", "--out", filepath.Join(dir, "h"))
	list := listJSON(t, r)
	var serials, lines []string
	for _, e := range list {
		serials = append(serials, e["serial"].(string))
		b, _ := json.Marshal(e)
		lines = append(lines, string(b))
	}
	if got := r.ok("ls", "-q"); got != strings.Join(serials, "\n")+"\n" {
		t.Errorf("ls -q = %q, want %v", got, serials)
	}
	if got := r.ok("ls", "--quiet", "--kind", "daemon"); got != serials[1]+"\n" {
		t.Errorf("ls --quiet --kind daemon = %q", got)
	}
	// {{json .}} is --json's object, one a line.
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(r.ok("ls", "--format", "{{json .}}")), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("ls --format '{{json .}}': %v: %s", err, l)
		}
		b, _ := json.Marshal(m)
		got = append(got, string(b))
	}
	if strings.Join(got, "\n") != strings.Join(lines, "\n") {
		t.Errorf("ls --format '{{json .}}':\n%s\nwant\n%s", got, lines)
	}
	if out := r.ok("ls", "--format", `table {{.Name}}\t{{.Kind}}`); !strings.HasPrefix(out, "NAME        KIND\nalice       client\nh1.example  daemon\n") {
		t.Errorf("ls --format table: %q", out)
	}
	if out := r.ok("show", "alice", "--format", "{{.PEM}}"); !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("show --format {{.PEM}}: %q", out)
	}
	r.ok("token", "create", "--kind", "client", "bob", "--ca-url", "https://127.0.0.1:8443")
	if out := r.ok("token", "ls", "--format", "{{.Name}} {{.Status}} {{.UsedAt}}"); out != "bob outstanding \n" {
		t.Errorf("token ls --format: %q", out)
	}
	// token ls prints times as RFC 3339 in UTC, like ls.
	if out := r.ok("token", "ls"); !regexp.MustCompile(`outstanding  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  -`).MatchString(out) {
		t.Errorf("token ls table time format:\n%s", out)
	}
	cfg := t.TempDir()
	if out := r.ok("context", "ls", "--docker-config", cfg, "--format", "{{.Name}}"); out != "" {
		t.Errorf("context ls --format with no contexts: %q", out)
	}
	for _, args := range [][]string{
		{"ls", "--json", "-q"}, {"ls", "-q", "--format", "{{.Name}}"}, {"ls", "--format", "{{.Nope}}"}, {"ls", "--format", "{{.Name"},
		{"show", "alice", "--json", "--format", "x"}, {"token", "ls", "--json", "--format", "x"},
		{"context", "ls", "--docker-config", cfg, "--json", "--format", "x"}, {"version", "--format", "{{.Nope}}"},
	} {
		if res := r.run(args...); res.code != 2 || res.out != "" || strings.Count(res.err, "\n") != 1 {
			t.Errorf("dockca %v: %+v, want a one-line usage error", args, res)
		}
	}
}

// crl prints PEM to a terminal (a real pty, through script(1)), DER to a
// pipe, and DER to a terminal only with --der.
func TestCRLNeverDERToATerminal(t *testing.T) {
	dockerdtest.RequireCommand(t, "script")
	bin := buildDockca(t)
	r := newCLI(t)
	initCA(t, r)
	onTTY := func(args ...string) []byte {
		t.Helper()
		line := bin + " --home " + r.home() + " " + strings.Join(args, " ")
		cmd := exec.Command("script", "-qec", line, "/dev/null")
		cmd.Env = append(os.Environ(), "DOCKCA_PASSWORD="+r.env["DOCKCA_PASSWORD"])
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("script %s: %v\n%s", line, err, out)
		}
		return out
	}
	if out := onTTY("crl"); !strings.HasPrefix(string(out), "-----BEGIN X509 CRL-----") {
		t.Errorf("crl on a terminal: %q", out)
	}
	if out := onTTY("crl", "--der"); len(out) == 0 || out[0] != 0x30 {
		t.Errorf("crl --der on a terminal: %q", out)
	}
	if out := r.ok("crl"); len(out) == 0 || out[0] != 0x30 {
		t.Errorf("crl to a pipe is not DER: %q", out)
	}
	if res := r.run("crl", "--pem", "--der"); res.code != 2 {
		t.Errorf("crl --pem --der: %+v", res)
	}
}

// repeatedPrefix returns the first ": "-separated segment of msg that
// repeats an earlier one or extends it by more words ("renew: renew:",
// "revoke: revoke 0a1b:"), or "".
func repeatedPrefix(msg string) string {
	segs := strings.Split(msg, ": ")
	for i := 1; i < len(segs); i++ {
		for j := 0; j < i; j++ {
			if segs[i] == segs[j] || strings.HasPrefix(segs[i], segs[j]+" ") {
				return segs[i]
			}
		}
	}
	return ""
}

func TestRepeatedPrefix(t *testing.T) {
	for msg, want := range map[string]string{
		"dockca: enroll: enroll: HTTP 401":       "enroll",
		"dockca: revoke: revoke 0a1b: not found": "revoke 0a1b",
		"dockca: renew context x: renew at u: y": "",
		"dockca: token create: token TTL 48h":    "",
	} {
		if got := repeatedPrefix(msg); got != want {
			t.Errorf("repeatedPrefix(%q) = %q, want %q", msg, got, want)
		}
	}
}

// Failing commands exit with the status the README states (2 for a
// malformed command line, a missing required flag included; 1 for every
// refusal, policy included), in one line, with no doubled prefix, and
// user input cannot forge a second line.
func TestErrorMessages(t *testing.T) {
	r := newCLI(t)
	fp := initCA(t, r)
	dir := t.TempDir()
	r.ok("issue", "client", "alice", "--out", filepath.Join(dir, "a"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	serveInProcess(t, r, addr)
	caURL := "https://" + addr
	// A well-formed token the service never minted.
	forged := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IiLCJkb2NrY2EiOnsia2luZCI6ImNsaWVudCJ9fQ.c2ln"
	empty := t.TempDir()
	cases := []struct {
		code int
		args []string
	}{
		{1, []string{"enroll", "--ca-url", caURL, "--token", forged, "--fingerprint", fp, "--cert-dir", filepath.Join(dir, "e")}},
		{1, []string{"enroll", "--ca-url", caURL, "--token", forged, "--fingerprint", strings.Repeat("0", 64), "--cert-dir", filepath.Join(dir, "e")}},
		{1, []string{"renew", "--cert-dir", empty}},
		{1, []string{"revoke", "nobody"}},
		{1, []string{"revoke", "x\ndockca: revoked everything"}},
		{1, []string{"show", "x\ndockca: forged"}},
		{1, []string{"context", "rm", "--docker-config", empty, "x\ndockca: forged"}},
		{1, []string{"context", "renew", "--docker-config", empty, "x\ny"}},
		{1, []string{"token", "create", "--kind", "client", "bob", "--token-ttl", "48h"}},
		{1, []string{"token", "create", "--kind", "client", "bad\nname"}},
		{1, []string{"token", "create", "--kind", "client", "bob", "--role", "boss"}},
		{2, []string{"token", "create", "bob"}},
		{2, []string{"token", "create", "--kind", "boss", "bob"}},
		{2, []string{"token", "create", "--kind", "client", "bob", "--token-ttl", "5q"}},
		{2, []string{"enroll", "--cert-dir", filepath.Join(dir, "e")}},
		{2, []string{"renew"}},
	}
	for _, c := range cases {
		res := r.run(c.args...)
		if res.code != c.code || strings.Count(res.err, "\n") != 1 || !strings.HasPrefix(res.err, "dockca: ") || res.out != "" {
			t.Errorf("dockca %q: exit %d, stderr %q, stdout %q; want exit %d and one line", c.args, res.code, res.err, res.out, c.code)
			continue
		}
		if p := repeatedPrefix(strings.TrimSpace(res.err)); p != "" {
			t.Errorf("dockca %q: prefix %q repeated in %q", c.args, p, res.err)
		}
		t.Logf("%d %s", res.code, strings.TrimSpace(res.err))
	}
}

// Every command that takes --ca-url, --token or --fingerprint reads
// DOCKCA_CA_URL, DOCKCA_TOKEN and DOCKCA_FINGERPRINT.
func TestRemoteFlagsReadTheEnvironment(t *testing.T) {
	want := map[string]string{"ca-url": "DOCKCA_CA_URL", "token": "DOCKCA_TOKEN", "fingerprint": "DOCKCA_FINGERPRINT"}
	seen := map[string]int{}
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			for _, f := range c.Flags {
				sf, ok := f.(*cli.StringFlag)
				if !ok || want[sf.Name] == "" {
					continue
				}
				seen[sf.Name]++
				if !slices.Equal(sf.EnvVars, []string{want[sf.Name]}) {
					t.Errorf("%s%s --%s reads %v, want %s", path, c.Name, sf.Name, sf.EnvVars, want[sf.Name])
				}
			}
			walk(path+c.Name+" ", c.Subcommands)
		}
	}
	walk("", newApp(&env{}).Commands)
	if seen["ca-url"] < 7 || seen["fingerprint"] < 6 || seen["token"] < 3 {
		t.Errorf("fewer remote flags than commands taking them: %v", seen)
	}
	// audit takes the root from the service the environment names.
	r := newCLI(t)
	t.Setenv("DOCKCA_CA_URL", "https://127.0.0.1:1")
	t.Setenv("DOCKCA_FINGERPRINT", strings.Repeat("0", 64))
	if res := r.run("audit", "127.0.0.1:1"); res.code != 1 || !strings.Contains(res.err, "127.0.0.1:1") || !strings.Contains(res.err, "CA root") {
		t.Errorf("audit with DOCKCA_CA_URL: %+v", res)
	}
}

// serveInProcess runs dockca serve on r's home until the test ends, and
// returns once its admin socket is there.
func serveInProcess(t *testing.T, r *cliRunner, listen string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- r.runCtx(ctx, "--home", r.home(), "serve", "--listen", listen) }()
	t.Cleanup(func() {
		cancel()
		if res := <-done; res.code != 0 {
			t.Errorf("serve: %+v", res)
		}
	})
	deadline := time.Now().Add(2 * time.Minute) // -race on a loaded machine
	for {
		if _, err := os.Stat(filepath.Join(r.home(), "serve.sock")); err == nil {
			return
		}
		select {
		case res := <-done:
			done <- res
			t.Fatalf("serve ended before opening its admin socket: %+v", res)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not open its admin socket")
		}
	}
}
