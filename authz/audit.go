package authz

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dockca/dockca/pki"
)

// AuditLog writes one JSON line per decision. Lines hold who, what and why,
// never request bodies or query strings: those carry environment variables,
// build arguments and registry credentials.
type AuditLog struct {
	mu sync.Mutex
	w  io.Writer
	c  io.Closer
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Time     time.Time `json:"time"`
	User     string    `json:"user"`
	Serial   string    `json:"serial,omitempty"`
	Role     pki.Role  `json:"role,omitempty"`
	Scope    []string  `json:"scope,omitempty"` // the client certificate's scope
	Method   string    `json:"method"`
	Path     string    `json:"path"`
	Decision string    `json:"decision"` // "allow" or "deny"
	Rule     string    `json:"rule"`
	Reason   string    `json:"reason,omitempty"` // the denial message
}

// NewAuditLog writes to w (for "-", stdout).
func NewAuditLog(w io.Writer) *AuditLog { return &AuditLog{w: w} }

// OpenAuditLog opens (creating 0600, in a 0700 directory if missing) an
// append-only audit file; "-" means stdout.
func OpenAuditLog(name string) (*AuditLog, error) {
	if name == "-" {
		return NewAuditLog(os.Stdout), nil
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return &AuditLog{w: f, c: f}, nil
}

// Write records a decision as one line; a single Write call keeps lines whole
// with O_APPEND.
func (l *AuditLog) Write(t time.Time, d Decision) error {
	e := AuditEntry{Time: t.UTC(), User: d.User, Serial: d.Serial, Role: d.Role, Scope: d.Scope, Method: d.Method,
		Path: d.Path, Decision: "deny", Rule: d.Rule}
	if d.Allow {
		e.Decision = "allow"
	} else {
		e.Reason = d.Msg
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("write audit log: %w", err)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(line); err != nil {
		return fmt.Errorf("write audit log: %w", err)
	}
	return nil
}

// Close closes the file OpenAuditLog opened.
func (l *AuditLog) Close() error {
	if l.c == nil {
		return nil
	}
	return l.c.Close()
}
