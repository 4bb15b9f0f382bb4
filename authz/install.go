package authz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dockca/dockca/internal/atomicfile"
)

// UnitName is the systemd unit `dockca authz install` writes.
const UnitName = "dockca-authz.service"

// UnitOptions describe the service unit.
type UnitOptions struct {
	// Exec is the dockca binary (default: the running executable).
	Exec string
	// Args follow Exec, e.g. {"authz", "--home", "/var/lib/dockca"}.
	Args []string
	// WritablePaths are opened up under ProtectSystem=strict: the home or
	// CRL cache, the audit log's directory. The plugin directory is always
	// writable.
	WritablePaths []string
}

// RenderUnit returns the text of dockca-authz.service. The unit starts
// before docker.service so that the plugin socket exists when dockerd first
// needs it; the hardening keeps the plugin, which decides root access to the
// host, from doing anything but read its inputs and serve its socket.
func RenderUnit(o UnitOptions) (string, error) {
	if o.Exec == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("render unit: find executable: %w", err)
		}
		o.Exec = exe
	}
	if !filepath.IsAbs(o.Exec) {
		return "", fmt.Errorf("render unit: executable %q must be an absolute path", o.Exec)
	}
	words := []string{systemdQuote(o.Exec)}
	for _, a := range o.Args {
		words = append(words, systemdQuote(a))
	}
	writable := map[string]bool{PluginDir: true}
	for _, p := range o.WritablePaths {
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("render unit: writable path %q must be absolute", p)
		}
		writable[filepath.Clean(p)] = true
	}
	var rw []string
	for p := range writable {
		// "-": a path that does not exist yet must not stop the unit.
		rw = append(rw, "-"+systemdQuote(p))
	}
	sort.Strings(rw)

	var b strings.Builder
	b.WriteString(`# Written by dockca authz install. While this plugin is down every docker
# call hangs about 30 s (dockerd retries the plugin) and then fails: the unit
# restarts it at once, without a start limit; "dockca authz status" tells
# whether it answers.
[Unit]
Description=dockca authorization plugin for the Docker Engine
Before=docker.service
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
`)
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(words, " "))
	b.WriteString(`Restart=always
RestartSec=100ms
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome=read-only
`)
	fmt.Fprintf(&b, "ReadWritePaths=%s\n", strings.Join(rw, " "))
	b.WriteString(`PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service

[Install]
WantedBy=multi-user.target
`)
	return b.String(), nil
}

// systemdQuote quotes a word for ExecStart when it needs it; "%" and "$"
// are escaped so systemd does not expand them.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// WriteResult says what WriteUnit did.
type WriteResult int

const (
	Unchanged WriteResult = iota // the file already had this content
	Created
	Updated
)

func (r WriteResult) String() string {
	return [...]string{"unchanged", "created", "updated"}[r]
}

// WriteUnit writes the unit text to dir/dockca-authz.service atomically
// (0644, as systemd units are) unless it already says exactly that.
func WriteUnit(dir, text string) (string, WriteResult, error) {
	name := filepath.Join(dir, UnitName)
	old, err := os.ReadFile(name)
	switch {
	case err == nil && bytes.Equal(old, []byte(text)):
		return name, Unchanged, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return name, Unchanged, fmt.Errorf("write unit: %w", err)
	}
	res := Created
	if err == nil {
		res = Updated
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return name, Unchanged, fmt.Errorf("write unit: %w", err)
	}
	if err := atomicfile.WriteFile(name, []byte(text), 0o644); err != nil {
		return name, Unchanged, fmt.Errorf("write unit: %w", err)
	}
	return name, res, nil
}

// DefaultSystemdDir is where `dockca authz install` puts the unit.
const DefaultSystemdDir = "/etc/systemd/system"

// InstallOptions configure InstallUnit.
type InstallOptions struct {
	SystemdDir string // default DefaultSystemdDir
	Unit       UnitOptions
}

// InstallUnit renders and writes dockca-authz.service and tells the admin
// what to run next. daemon.json is not touched here: the caller merges
// "authorization-plugins" with the shared daemon.json merge and then the
// admin sends dockerd SIGHUP.
func InstallUnit(ctx context.Context, o InstallOptions, w io.Writer) (WriteResult, error) {
	if err := ctx.Err(); err != nil {
		return Unchanged, err
	}
	if o.SystemdDir == "" {
		o.SystemdDir = DefaultSystemdDir
	}
	text, err := RenderUnit(o.Unit)
	if err != nil {
		return Unchanged, err
	}
	name, res, err := WriteUnit(o.SystemdDir, text)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(w, "%s: %s\n", name, res)
	fmt.Fprintf(w, "start it before dockerd needs it: systemctl daemon-reload && systemctl enable --now %s\n", UnitName)
	return res, nil
}

// ReloadHint is what to tell the admin once daemon.json lists the plugin.
func ReloadHint(name string) string {
	return fmt.Sprintf("daemon.json now lists authorization plugin %q; send dockerd SIGHUP to load it (systemctl reload docker, or kill -HUP $(pidof dockerd)). While the plugin is down dockerd refuses every request: systemctl restart %s restores access.", name, UnitName)
}
