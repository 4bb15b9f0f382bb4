// Package systemdunit renders and writes the hardened systemd services that
// run dockca's enforcement points (the authorization plugin and the gate).
// Both decide root access to a host, so both run with the same hardening:
// they may read their inputs, serve their sockets and nothing else.
package systemdunit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dockca/dockca/internal/atomicfile"
)

// Command is what an enforcement point's unit runs: the dockca binary, its
// arguments, and the paths it may write under ProtectSystem=strict (the
// home or CRL cache, the audit log's directory).
type Command struct {
	// Exec is the dockca binary (default: the running executable).
	Exec string
	// Args follow Exec, e.g. {"authz", "--home", "/var/lib/dockca"}.
	Args []string
	// WritablePaths are opened up under ProtectSystem=strict.
	WritablePaths []string
}

// Spec describes one service.
type Spec struct {
	// Comment lines head the file (without "# ").
	Comment []string
	// Description is the unit's Description=.
	Description string
	// Before, After and Wants order the unit (network-online.target is
	// always after and wanted).
	Before, After, Wants []string
	// Exec is the absolute path of the binary (default: the running
	// executable); Args follow it.
	Exec string
	Args []string
	// WritablePaths are opened up under ProtectSystem=strict.
	WritablePaths []string
}

// Render returns the unit text. It restarts the service at once and
// forever: while an enforcement point is down, every docker call fails.
func Render(s Spec) (string, error) {
	if s.Exec == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("render unit: find executable: %w", err)
		}
		s.Exec = exe
	}
	if !filepath.IsAbs(s.Exec) {
		return "", fmt.Errorf("render unit: executable %q must be an absolute path", s.Exec)
	}
	words := []string{Quote(s.Exec)}
	for _, a := range s.Args {
		words = append(words, Quote(a))
	}
	writable := map[string]bool{}
	for _, p := range s.WritablePaths {
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("render unit: writable path %q must be absolute", p)
		}
		writable[filepath.Clean(p)] = true
	}
	var rw []string
	for p := range writable {
		// "-": a path that does not exist yet must not stop the unit.
		rw = append(rw, "-"+Quote(p))
	}
	sort.Strings(rw)

	var b strings.Builder
	for _, c := range s.Comment {
		b.WriteString("# " + c + "\n")
	}
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=%s\n", s.Description)
	for _, u := range s.Before {
		fmt.Fprintf(&b, "Before=%s\n", u)
	}
	fmt.Fprintf(&b, "After=%s\n", strings.Join(append(append([]string{}, s.After...), "network-online.target"), " "))
	fmt.Fprintf(&b, "Wants=%s\n", strings.Join(append(append([]string{}, s.Wants...), "network-online.target"), " "))
	b.WriteString("StartLimitIntervalSec=0\n\n[Service]\nType=simple\n")
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(words, " "))
	b.WriteString(`Restart=always
RestartSec=100ms
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome=read-only
`)
	if len(rw) > 0 {
		fmt.Fprintf(&b, "ReadWritePaths=%s\n", strings.Join(rw, " "))
	}
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

// Quote quotes a word for ExecStart when it needs it; "%" and "$" are
// escaped so systemd does not expand them.
func Quote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// Result says what Write did.
type Result int

const (
	Unchanged Result = iota // the file already had this content
	Created
	Updated
)

func (r Result) String() string {
	return [...]string{"unchanged", "created", "updated"}[r]
}

// Write writes text to dir/name atomically (0644, as systemd units are)
// unless it already says exactly that.
func Write(dir, name, text string) (string, Result, error) {
	path := filepath.Join(dir, name)
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, []byte(text)):
		return path, Unchanged, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return path, Unchanged, fmt.Errorf("write unit: %w", err)
	}
	res := Created
	if err == nil {
		res = Updated
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return path, Unchanged, fmt.Errorf("write unit: %w", err)
	}
	if err := atomicfile.WriteFile(path, []byte(text), 0o644); err != nil {
		return path, Unchanged, fmt.Errorf("write unit: %w", err)
	}
	return path, res, nil
}
