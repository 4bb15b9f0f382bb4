package daemonsetup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dockca/dockca/contexts"
	"github.com/dockca/dockca/daemonsetup"
	"github.com/dockca/dockca/internal/dockerdtest"
	"github.com/dockca/dockca/internal/testca"
)

// TestSetupServesDockerCLI is the whole path a provisioning script takes:
// daemon setup writes daemon.json, TLS files and the drop-in into a temp
// root; a real dockerd starts from that daemon.json alone (hosts and TLS as
// written, loopback only); a context written by the contexts package
// reaches it with the real docker CLI; a client without a certificate does
// not.
func TestSetupServesDockerCLI(t *testing.T) {
	dockerdtest.Require(t)
	ctx := context.Background()
	c := testca.New(t)
	root := t.TempDir()
	sockDir := dockerdtest.ShortTempDir(t)
	sock := filepath.Join(sockDir, "docker.sock")
	port := strconv.Itoa(dockerdtest.FreePort(t, "127.0.0.1"))
	tcp := "tcp://127.0.0.1:" + port

	o := daemonsetup.SetupOptions{
		Host:       "127.0.0.1",
		SANs:       []string{"localhost"},
		Listen:     []string{tcp},
		TLSDir:     filepath.Join(root, "etc/docker/tls"),
		ConfigPath: filepath.Join(root, "etc/docker/daemon.json"),
		SystemdDir: filepath.Join(root, "etc/systemd/system/docker.service.d"),
	}
	// An operator's existing daemon.json: its own socket and a label that
	// must still reach dockerd after the merge.
	writeFile(t, o.ConfigPath, `{"labels": ["provisioned-by=test"], "hosts": ["unix://`+sock+`"], "shutdown-timeout": 5}`)
	var out bytes.Buffer
	if _, err := daemonsetup.Setup(ctx, o, c, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("setup:\n%s", out.String())
	var merged map[string]any
	data, _ := os.ReadFile(o.ConfigPath)
	json.Unmarshal(data, &merged)
	if hosts := merged["hosts"].([]any); len(hosts) != 2 || hosts[0] != "unix://"+sock || hosts[1] != tcp {
		t.Fatalf("hosts: %v", hosts)
	}

	d := dockerdtest.Start(t, dockerdtest.Options{ConfigFile: o.ConfigPath, Socket: sock})
	if out, err := d.Local(t, "info", "--format", "{{.Labels}}"); err != nil || !strings.Contains(out, "provisioned-by=test") {
		t.Fatalf("unrelated daemon.json key lost: %v %s", err, out)
	}

	cfg := t.TempDir()
	co := contexts.Options{DockerConfigDir: cfg}
	if err := contexts.Add(ctx, contexts.AddOptions{Options: co, Name: "docker1", Host: tcp, Role: "admin"}, c, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	env := []string{"DOCKER_CONFIG=" + cfg}
	vout, err := dockerdtest.Docker(t, env, "--context", "docker1", "version", "--format", "{{.Server.Os}}")
	if err != nil || strings.TrimSpace(vout) != "linux" {
		t.Fatalf("docker --context docker1 version: %v\n%s", err, vout)
	}
	ls, err := dockerdtest.Docker(t, env, "context", "ls", "--format", "{{.Name}} {{.DockerEndpoint}}")
	if err != nil || !strings.Contains(ls, "docker1 "+tcp) {
		t.Fatalf("docker context ls: %v\n%s", err, ls)
	}
	in, err := dockerdtest.Docker(t, env, "context", "inspect", "docker1")
	if err != nil || !strings.Contains(in, `"dockca"`) || !strings.Contains(in, tcp) {
		t.Fatalf("docker context inspect: %v\n%s", err, in)
	}

	// TLS without a client certificate is refused by the daemon setup made.
	anon := t.TempDir()
	os.WriteFile(filepath.Join(anon, "ca.pem"), c.RootPEM, 0o644)
	aout, err := dockerdtest.Docker(t, []string{"DOCKER_CONFIG=" + t.TempDir(), "DOCKER_HOST=" + tcp, "DOCKER_TLS=1", "DOCKER_CERT_PATH=" + anon},
		"version", "--format", "{{.Server.Os}}")
	if err == nil {
		t.Fatalf("a client without a certificate got through:\n%s", aout)
	}
	// Plain HTTP on the TLS port gets nothing either.
	conn, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err == nil {
		conn.Write([]byte("GET /_ping HTTP/1.0\r\n\r\n"))
		buf := make([]byte, 64)
		n, _ := conn.Read(buf)
		conn.Close()
		if strings.Contains(string(buf[:n]), "200 OK") {
			t.Fatal("plain HTTP answered on the TLS listener")
		}
	}

	// Running setup again on the provisioned host changes nothing.
	out.Reset()
	res, err := daemonsetup.Setup(ctx, o, c, &out)
	if err != nil || res.Changed {
		t.Fatalf("second run: %+v %v\n%s", res, err, out.String())
	}
}
