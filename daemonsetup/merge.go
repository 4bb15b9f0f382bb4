package daemonsetup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/internal/jsonobj"
)

// ErrInvalidConfig is returned for a daemon.json that is not a JSON object;
// nothing is written then.
var ErrInvalidConfig = errors.New("invalid daemon.json (nothing changed)")

// ErrPlainTCP is returned when a merged daemon.json would let dockerd
// listen on a non-loopback TCP address without verified client TLS.
var ErrPlainTCP = errors.New("refusing a non-loopback tcp listener without tlsverify")

// Change is one top-level key of daemon.json that an edit changed. Old is
// nil for an added key, New is nil for a removed one.
type Change struct {
	Key      string
	Old, New json.RawMessage
}

func (c Change) String() string {
	show := func(v json.RawMessage) string {
		if v == nil {
			return "(absent)"
		}
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			return string(v)
		}
		return b.String()
	}
	return fmt.Sprintf("%s: %s -> %s", c.Key, show(c.Old), show(c.New))
}

// MergeDaemonConfig applies edit to the top-level keys of the daemon.json at
// path (a missing file is an empty object) and, unless dryRun, writes the
// result atomically, keeping the previous file as path+".bak". Every key
// the edit does not touch keeps its exact value text and position. Nothing
// is written when the edit changes nothing, when the file is not a JSON
// object, when edit fails, or when the result would expose dockerd on a
// non-loopback tcp address without tlsverify (see CheckListeners).
func MergeDaemonConfig(path string, edit func(map[string]json.RawMessage) error, dryRun bool) (changed bool, changes []Change, err error) {
	changes, out, mode, err := planMerge(path, edit)
	if err != nil || len(changes) == 0 || dryRun {
		return len(changes) > 0, changes, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, nil, fmt.Errorf("write %s: %w", path, err)
	}
	if old, err := os.ReadFile(path); err == nil {
		if err := atomicfile.WriteFile(path+".bak", old, mode); err != nil {
			return false, nil, fmt.Errorf("back up %s: %w", path, err)
		}
	}
	if err := atomicfile.WriteFile(path, out, mode); err != nil {
		return false, nil, err
	}
	return true, changes, nil
}

func planMerge(path string, edit func(map[string]json.RawMessage) error) ([]Change, []byte, os.FileMode, error) {
	mode := os.FileMode(0o644)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		data = nil
	case err != nil:
		return nil, nil, 0, fmt.Errorf("read %s: %w", path, err)
	default:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	obj, err := jsonobj.Decode(data)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%w: %s: %v", ErrInvalidConfig, path, err)
	}
	before := make(map[string]json.RawMessage, len(obj.Values))
	for k, v := range obj.Values {
		before[k] = v
	}
	if err := edit(obj.Values); err != nil {
		return nil, nil, 0, err
	}
	for k, v := range obj.Values {
		if !json.Valid(v) {
			return nil, nil, 0, fmt.Errorf("edit of %s produced invalid JSON for %q", path, k)
		}
	}
	if err := CheckListeners(obj.Values); err != nil {
		return nil, nil, 0, err
	}
	var changes []Change
	for _, k := range obj.Keys {
		if v, ok := obj.Values[k]; !ok {
			changes = append(changes, Change{Key: k, Old: before[k]})
		} else if !jsonobj.Equal(before[k], v) {
			changes = append(changes, Change{Key: k, Old: before[k], New: v})
		}
	}
	out, err := obj.Encode("  ")
	if err != nil {
		return nil, nil, 0, err
	}
	// Keys the edit added, in the order Encode writes them.
	added, _ := jsonobj.Decode(out)
	for _, k := range added.Keys {
		if _, existed := before[k]; !existed {
			changes = append(changes, Change{Key: k, New: obj.Values[k]})
		}
	}
	return changes, out, mode, nil
}

// CheckListeners enforces dockca's one hard rule for daemon.json: a tcp
// listener on anything but loopback requires tlsverify true and all three
// TLS files. It errs on the side of refusing: a host it cannot parse, or a
// hostname other than localhost, counts as non-loopback.
func CheckListeners(cfg map[string]json.RawMessage) error {
	var hosts []string
	if raw, ok := cfg["hosts"]; ok {
		if err := json.Unmarshal(raw, &hosts); err != nil {
			return fmt.Errorf("daemon.json hosts: want a list of strings: %v", err)
		}
	}
	verified := boolKey(cfg, "tlsverify") && stringKey(cfg, "tlscacert") && stringKey(cfg, "tlscert") && stringKey(cfg, "tlskey")
	for _, h := range hosts {
		tcp, ok := tcpListener(h)
		if !ok || verified {
			continue
		}
		if !loopback(tcp) {
			return fmt.Errorf("%w: %s", ErrPlainTCP, h)
		}
	}
	return nil
}

// tcpListener reads a hosts entry the way dockerd does (opts.ParseHost):
// surrounding space is ignored and an entry without a scheme is tcp. It
// returns the entry as a tcp:// URL, or false for local sockets (unix://,
// npipe://, and fd:// from systemd socket activation). Any other scheme
// counts as tcp, so that it is checked rather than waved through.
func tcpListener(h string) (string, bool) {
	h = strings.TrimSpace(h)
	scheme, rest, found := strings.Cut(h, "://")
	if !found {
		return "tcp://" + h, true
	}
	switch strings.ToLower(scheme) {
	case "unix", "npipe", "fd":
		return "", false
	}
	return "tcp://" + rest, true
}

func loopback(tcpURL string) bool {
	u, err := url.Parse(tcpURL)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func boolKey(cfg map[string]json.RawMessage, k string) bool {
	var b bool
	return json.Unmarshal(cfg[k], &b) == nil && b
}

func stringKey(cfg map[string]json.RawMessage, k string) bool {
	var s string
	return json.Unmarshal(cfg[k], &s) == nil && s != ""
}

// AddAuthorizationPlugin is an edit for MergeDaemonConfig that appends
// plugin to "authorization-plugins" unless it is already listed; other
// plugins keep their places.
func AddAuthorizationPlugin(plugin string) func(map[string]json.RawMessage) error {
	return func(cfg map[string]json.RawMessage) error {
		var plugins []string
		if raw, ok := cfg["authorization-plugins"]; ok {
			if err := json.Unmarshal(raw, &plugins); err != nil {
				return fmt.Errorf("authorization-plugins is not a list of names: %w", err)
			}
		}
		if slices.Contains(plugins, plugin) {
			return nil
		}
		raw, err := json.Marshal(append(plugins, plugin))
		if err != nil {
			return err
		}
		cfg["authorization-plugins"] = raw
		return nil
	}
}
