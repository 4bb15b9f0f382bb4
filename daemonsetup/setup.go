// Package daemonsetup prepares a Docker host to serve its API over mutual
// TLS with a dockca certificate, for provisioning scripts: it installs the
// daemon certificate, merges the TLS settings and listeners into
// daemon.json, and writes the systemd drop-in that lets daemon.json's
// "hosts" take effect. It is idempotent — a second run with the same inputs
// neither issues a certificate nor touches a file — so a script can run it
// on every provisioning pass and restart dockerd only when it reports a
// change. dockerd reads TLS material only at start (SIGHUP does not reload
// it), so this package never signals dockerd; the caller restarts it.
//
// Rules it enforces, fail-closed:
//   - daemon.json must be a JSON object; otherwise nothing at all is written.
//   - An explicit "tls": false or "tlsverify": false in daemon.json is
//     refused rather than overridden: someone turned TLS off on purpose, and
//     the operator must remove the key before dockca turns it on.
//   - A non-loopback tcp listener is never written without tlsverify and the
//     three TLS files (MergeDaemonConfig checks every write, not only this
//     package's).
//   - --listen takes only tcp://HOST:PORT and unix:///PATH.
//
// The daemon certificate is kept when the TLS directory already holds a
// certificate that matches its key, chains to the CA's current root, covers
// the host and every SAN, and has more than a third of its lifetime left;
// otherwise a new one is issued.
package daemonsetup

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dockca/dockca/internal/atomicfile"
	"github.com/dockca/dockca/internal/tlsbundle"
	"github.com/dockca/dockca/pki"
)

// Defaults for SetupOptions, the stock Debian/Ubuntu/Docker CE layout.
const (
	DefaultListen     = "tcp://0.0.0.0:2376"
	DefaultTLSDir     = "/etc/docker/tls"
	DefaultConfigPath = "/etc/docker/daemon.json"
	DefaultSystemdDir = "/etc/systemd/system/docker.service.d"
	DefaultDockerd    = "/usr/bin/dockerd"
	// DefaultLocalSocket is added to "hosts" when daemon.json had none, so
	// local `docker` keeps working once hosts replaces the stock -H fd://.
	DefaultLocalSocket = "unix:///var/run/docker.sock"
	// DropInName is the systemd drop-in file written into SystemdDir.
	DropInName = "dockca.conf"
)

// Errors callers may branch on.
var (
	ErrInvalidListen = errors.New("invalid listen address")
	ErrInvalidHost   = errors.New("invalid host name")
	ErrTLSDisabled   = errors.New("daemon.json disables TLS explicitly")
)

// Issuer issues daemon (server) certificates. IssueDaemon's certificate
// must cover host and sans as DNS or IP SANs; ttl zero means the CA's
// default. CACertificate is the root PEM the CA currently issues under,
// used to decide whether an installed certificate is still current.
type Issuer interface {
	CACertificate(ctx context.Context) ([]byte, error)
	IssueDaemon(ctx context.Context, host string, sans []string, ttl time.Duration) (*tlsbundle.Bundle, error)
}

// Recorder is implemented by issuers that keep a record beside the
// certificate: a CA service writes where it is and which root it was
// trusted by (enroll.FileMeta), so that `dockca renew --cert-dir TLSDIR`
// and `renew --watch` need no flags. Record returns the file name (in the
// TLS directory) and its content for a daemon certificate of host.
type Recorder interface {
	Record(host string) (name string, data []byte, err error)
}

// SetupOptions are the inputs of `dockca daemon setup`.
type SetupOptions struct {
	// Host is the daemon's primary name or IP (the certificate's subject).
	Host string
	// SANs are further DNS names or IPs the certificate must cover.
	SANs []string
	// Groups are the daemon's groups (sorted, see pki/scope.go):
	// an installed certificate for other groups is replaced. The Issuer
	// puts them into the new certificate.
	Groups []string
	// Listen are listeners added to daemon.json's hosts; empty means
	// DefaultListen.
	Listen []string
	// TLSDir, ConfigPath, SystemdDir: empty means the Default* values.
	TLSDir, ConfigPath, SystemdDir string
	// Dockerd is the binary the drop-in starts; empty means DefaultDockerd.
	Dockerd string
	// TTL is the certificate lifetime; zero means the CA's default.
	TTL time.Duration
	// GateUnit, when set, puts dockca gate in front of dockerd: dockerd
	// keeps only its unix sockets (no tcp host, no TLS keys in daemon.json)
	// and this unit text (gate.RenderUnit) is written as GateUnitName into
	// GateSystemdDir. Listen is then ignored: the gate listens.
	GateUnit, GateUnitName, GateSystemdDir string
	// LiveRestore sets "live-restore": true in daemon.json, so that the
	// restart after each renewal (dockerd reads its TLS files only at
	// start) keeps containers running.
	LiveRestore bool
	// DryRun reports what would change and writes (and issues) nothing.
	DryRun bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Result says what Setup did (or, with DryRun, would do).
type Result struct {
	// Changed is true when any file changed; dockerd then needs a restart.
	Changed bool
	// Issued is true when a new certificate was (or would be) issued;
	// Serial is its serial when actually issued.
	Issued bool
	Serial string
	// Config lists the daemon.json keys that changed.
	Config []Change
	// DropIn is true when the systemd drop-in was (or would be) written.
	DropIn bool
}

func (o *SetupOptions) defaults() {
	if len(o.Listen) == 0 {
		o.Listen = []string{DefaultListen}
	}
	if o.TLSDir == "" {
		o.TLSDir = DefaultTLSDir
	}
	if o.ConfigPath == "" {
		o.ConfigPath = DefaultConfigPath
	}
	if o.SystemdDir == "" {
		o.SystemdDir = DefaultSystemdDir
	}
	if o.Dockerd == "" {
		o.Dockerd = DefaultDockerd
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Setup issues (if needed) and installs the daemon certificate, merges
// daemon.json and writes the systemd drop-in, printing each change to w.
// Input and daemon.json are validated before the CA is asked for anything.
func Setup(ctx context.Context, o SetupOptions, iss Issuer, w io.Writer) (*Result, error) {
	res, err := setup(ctx, o, iss, w)
	if err != nil {
		return res, fmt.Errorf("daemon setup %s: %w", o.Host, err)
	}
	return res, nil
}

func setup(ctx context.Context, o SetupOptions, iss Issuer, w io.Writer) (*Result, error) {
	o.defaults()
	if err := validName(o.Host); err != nil {
		return nil, err
	}
	for _, s := range o.SANs {
		if err := validName(s); err != nil {
			return nil, err
		}
	}
	listen := make([]string, 0, len(o.Listen))
	for _, l := range o.Listen {
		n, err := ParseListen(l)
		if err != nil {
			return nil, err
		}
		listen = append(listen, n)
	}
	tlsDir, err := filepath.Abs(o.TLSDir)
	if err != nil {
		return nil, err
	}
	edit := TLSEdit(filepath.Join(tlsDir, pki.FileCA), filepath.Join(tlsDir, pki.FileServerCert), filepath.Join(tlsDir, pki.FileServerKey), listen)
	if o.GateUnit != "" {
		if o.GateUnitName == "" || o.GateSystemdDir == "" {
			return nil, errors.New("a gate unit needs a name and a directory")
		}
		edit = GateEdit()
	}
	if o.LiveRestore {
		edit = liveRestoreEdit(edit)
	}
	// Plan the daemon.json merge first: a broken or TLS-disabling file stops
	// everything before a certificate exists.
	if _, _, err := MergeDaemonConfig(o.ConfigPath, edit, true); err != nil {
		return nil, err
	}
	dropInPath := filepath.Join(o.SystemdDir, DropInName)
	dropIn := DropIn(o.Dockerd)
	if !o.DryRun {
		for dir, perm := range map[string]os.FileMode{tlsDir: 0o700, filepath.Dir(o.ConfigPath): 0o755, o.SystemdDir: 0o755} {
			if err := atomicfile.CheckWritable(dir, perm); err != nil {
				return nil, err
			}
		}
	}
	res := &Result{}
	verb := func(done, would string) string {
		if o.DryRun {
			return would
		}
		return done
	}

	// 1. TLS material.
	root, err := iss.CACertificate(ctx)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	want := append([]string{o.Host}, o.SANs...)
	reason, err := needsIssue(tlsDir, root, want, o.Groups, o.Now())
	if err != nil {
		return nil, err
	}
	if reason != "" {
		res.Issued, res.Changed = true, true
		if o.DryRun {
			fmt.Fprintf(w, "tls: would issue a daemon certificate for %s into %s (%s)\n", strings.Join(want, ", "), tlsDir, reason)
		} else {
			b, err := iss.IssueDaemon(ctx, o.Host, o.SANs, o.TTL)
			if err != nil {
				return res, fmt.Errorf("issue daemon certificate: %w", err)
			}
			leaf, err := b.Check(o.Now(), x509.ExtKeyUsageServerAuth)
			if err != nil {
				return res, fmt.Errorf("issued certificate: %w", err)
			}
			if missing := pki.Uncovered(leaf, want); missing != "" {
				return res, fmt.Errorf("issued certificate %s does not cover %s; nothing installed", b.Serial, missing)
			}
			rec, err := record(iss, o.Host)
			if err != nil {
				return res, err
			}
			if err := installTLS(tlsDir, b, rec); err != nil {
				return res, fmt.Errorf("install certificate %s: %w", b.Serial, err)
			}
			res.Serial = b.Serial
			fmt.Fprintf(w, "tls: issued daemon certificate %s for %s, expires %s, into %s (%s)\n",
				b.Serial, strings.Join(want, ", "), b.NotAfter.UTC().Format(time.RFC3339), tlsDir, reason)
		}
	} else {
		fixed, err := fixModes(tlsDir, o.DryRun)
		if err != nil {
			return res, err
		}
		for _, f := range fixed {
			res.Changed = true
			fmt.Fprintf(w, "tls: %s %s\n", verb("restricted", "would restrict"), f)
		}
		// A certificate kept from an earlier run may lack the record (set
		// up before it was written): add it, so it can be renewed. dockerd
		// does not read it, so no restart is needed.
		rec, err := record(iss, o.Host)
		if err != nil {
			return res, err
		}
		if rec != nil {
			path := filepath.Join(tlsDir, rec.name)
			if old, err := os.ReadFile(path); err != nil || !bytes.Equal(old, rec.data) {
				if !o.DryRun {
					if err := atomicfile.WriteFile(path, rec.data, 0o644); err != nil {
						return res, err
					}
				}
				fmt.Fprintf(w, "tls: %s %s (where to renew)\n", verb("recorded", "would record"), path)
			}
		}
	}

	// 2. daemon.json.
	changed, changes, err := MergeDaemonConfig(o.ConfigPath, edit, o.DryRun)
	if err != nil {
		return res, err
	}
	res.Config = changes
	if changed {
		res.Changed = true
		for _, c := range changes {
			fmt.Fprintf(w, "%s: %s %s\n", o.ConfigPath, verb("set", "would set"), c)
		}
		if !o.DryRun {
			if _, err := os.Stat(o.ConfigPath + ".bak"); err == nil {
				fmt.Fprintf(w, "%s: previous version kept as %s.bak\n", o.ConfigPath, o.ConfigPath)
			}
		}
	}

	// 3. systemd drop-in.
	old, err := os.ReadFile(dropInPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, err
	}
	if !bytes.Equal(old, dropIn) {
		res.DropIn, res.Changed = true, true
		if !o.DryRun {
			if err := os.MkdirAll(o.SystemdDir, 0o755); err != nil {
				return res, err
			}
			if err := atomicfile.WriteFile(dropInPath, dropIn, 0o644); err != nil {
				return res, err
			}
		}
		fmt.Fprintf(w, "%s: %s (dockerd without -H flags, so daemon.json hosts apply)\n", dropInPath, verb("written", "would write"))
	}

	// 4. The gate's unit.
	if o.GateUnit != "" {
		unitPath := filepath.Join(o.GateSystemdDir, o.GateUnitName)
		old, err := os.ReadFile(unitPath)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return res, err
		}
		if string(old) != o.GateUnit {
			res.Changed = true
			if !o.DryRun {
				if err := os.MkdirAll(o.GateSystemdDir, 0o755); err != nil {
					return res, err
				}
				if err := atomicfile.WriteFile(unitPath, []byte(o.GateUnit), 0o644); err != nil {
					return res, err
				}
			}
			fmt.Fprintf(w, "%s: %s (the mutual-TLS front door; dockerd keeps only its unix socket)\n", unitPath, verb("written", "would write"))
		}
	}

	switch {
	case !res.Changed:
		fmt.Fprintln(w, "daemon setup: nothing changed")
	case o.DryRun:
		fmt.Fprintln(w, "daemon setup: dry run, nothing written")
	case o.GateUnit != "":
		fmt.Fprintf(w, "daemon setup: changed; apply with: systemctl daemon-reload && systemctl restart docker && systemctl enable --now %s (the gate reloads renewed certificates by itself)\n", o.GateUnitName)
	case o.DryRun:
		fmt.Fprintln(w, "daemon setup: dry run, nothing written")
	default:
		fmt.Fprintln(w, "daemon setup: changed; restart dockerd to apply: systemctl daemon-reload && systemctl restart docker (dockerd does not reload TLS material on SIGHUP)")
	}
	return res, nil
}

// TLSEdit returns the daemon.json edit Setup applies: tlsverify on, the
// three TLS paths, and listen appended to hosts (the local socket first when
// hosts was absent). It refuses a config that sets tls or tlsverify to
// false. Exported so that other commands can check what Setup would do.
func TLSEdit(caPath, certPath, keyPath string, listen []string) func(map[string]json.RawMessage) error {
	return func(cfg map[string]json.RawMessage) error {
		for _, k := range []string{"tls", "tlsverify"} {
			raw, ok := cfg[k]
			if !ok {
				continue
			}
			var b bool
			if err := json.Unmarshal(raw, &b); err != nil {
				return fmt.Errorf("daemon.json %s: want true or false, got %s", k, raw)
			}
			if !b {
				return fmt.Errorf("%w: %q is false; remove it and run again if TLS should be on", ErrTLSDisabled, k)
			}
		}
		var hosts []string
		if raw, ok := cfg["hosts"]; ok {
			if err := json.Unmarshal(raw, &hosts); err != nil {
				return fmt.Errorf("daemon.json hosts: want a list of strings: %v", err)
			}
		} else {
			hosts = []string{DefaultLocalSocket}
		}
		for _, l := range listen {
			if !slices.Contains(hosts, l) {
				hosts = append(hosts, l)
			}
		}
		set := func(k string, v any) {
			raw, _ := json.Marshal(v)
			cfg[k] = raw
		}
		set("tlsverify", true)
		set("tlscacert", caPath)
		set("tlscert", certPath)
		set("tlskey", keyPath)
		set("hosts", hosts)
		return nil
	}
}

// GateEdit returns the daemon.json edit for a host behind dockca gate:
// dockerd keeps only its unix sockets ("hosts" without tcp entries, the
// default socket when none is left) and no TLS settings, since the gate,
// not dockerd, terminates TLS; a tcp listener left in daemon.json would
// take the gate's port or offer the API around it.
func GateEdit() func(map[string]json.RawMessage) error {
	return func(cfg map[string]json.RawMessage) error {
		var hosts, keep []string
		if raw, ok := cfg["hosts"]; ok {
			if err := json.Unmarshal(raw, &hosts); err != nil {
				return fmt.Errorf("daemon.json hosts: want a list of strings: %v", err)
			}
		}
		for _, h := range hosts {
			if strings.HasPrefix(h, "unix://") || strings.HasPrefix(h, "fd://") {
				keep = append(keep, h)
			}
		}
		if len(keep) == 0 {
			keep = []string{DefaultLocalSocket}
		}
		raw, _ := json.Marshal(keep)
		cfg["hosts"] = raw
		for _, k := range []string{"tls", "tlsverify", "tlscacert", "tlscert", "tlskey"} {
			delete(cfg, k)
		}
		return nil
	}
}

// DropIn is the systemd drop-in text. The stock docker.service starts
// `dockerd -H fd://`, and dockerd refuses to start when hosts is given both
// as a flag and in daemon.json; the empty ExecStart= clears the stock
// command so this one replaces it.
func DropIn(dockerd string) []byte {
	return []byte(`# Written by dockca daemon setup. daemon.json lists "hosts"; dockerd refuses
# -H flags alongside it, so start dockerd without the stock -H fd://.
[Service]
ExecStart=
ExecStart=` + dockerd + "\n")
}

// ParseListen validates a --listen value: tcp://HOST:PORT or unix:///PATH.
func ParseListen(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrInvalidListen, s, err)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("%w %q", ErrInvalidListen, s)
	}
	switch u.Scheme {
	case "tcp":
		host, port := u.Hostname(), u.Port()
		if host == "" || port == "" || (u.Path != "" && u.Path != "/") {
			return "", fmt.Errorf("%w %q: want tcp://HOST:PORT (use 0.0.0.0 for all addresses)", ErrInvalidListen, s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%w %q: bad port", ErrInvalidListen, s)
		}
		return "tcp://" + net.JoinHostPort(host, port), nil
	case "unix":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return "", fmt.Errorf("%w %q: want unix:///ABSOLUTE/PATH", ErrInvalidListen, s)
		}
		return "unix://" + filepath.Clean(u.Path), nil
	}
	return "", fmt.Errorf("%w %q: only tcp:// and unix:// listeners", ErrInvalidListen, s)
}

// validName accepts an IP address or a DNS name (pki.ParseSAN: no
// wildcard): what can go into a SAN and match a client's dial.
func validName(s string) error {
	if _, err := pki.ParseSAN(s); err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidHost, s, err)
	}
	return nil
}

// needsIssue says why the TLS directory's certificate cannot be kept, or ""
// when it can.
func needsIssue(dir string, root []byte, want, groups []string, now time.Time) (string, error) {
	var b tlsbundle.Bundle
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{pki.FileCA, &b.CA}, {pki.FileServerCert, &b.Cert}, {pki.FileServerKey, &b.Key}} {
		data, err := os.ReadFile(filepath.Join(dir, f.name))
		if errors.Is(err, os.ErrNotExist) {
			return "no " + f.name + " yet", nil
		}
		if err != nil {
			return "", err
		}
		*f.dst = data
	}
	if !tlsbundle.SameCA(b.CA, root) {
		return "ca.pem does not hold the CA's current roots (a CA rotation)", nil
	}
	leaf, err := b.Check(now, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return "installed certificate unusable: " + err.Error(), nil
	}
	if missing := pki.Uncovered(leaf, want); missing != "" {
		return "installed certificate does not cover " + missing, nil
	}
	if has := pki.GroupsOf(leaf); !slices.Equal(has, groups) {
		return fmt.Sprintf("installed certificate is for groups %q, not %q", strings.Join(has, ","), strings.Join(groups, ",")), nil
	}
	if left, life := leaf.NotAfter.Sub(now), leaf.NotAfter.Sub(leaf.NotBefore); left < life/3 {
		return fmt.Sprintf("installed certificate expires %s, within the last third of its lifetime", leaf.NotAfter.UTC().Format(time.RFC3339)), nil
	}
	return "", nil
}

// installTLS writes the three files. Each write is atomic; the key goes
// last so that an interrupted run leaves a pair needsIssue rejects (and the
// next run replaces), while dockerd, which reads them only at start, keeps
// serving the old material until it is restarted.
func installTLS(dir string, b *tlsbundle.Bundle, rec *recordFile) error {
	if err := atomicfile.MkdirPrivate(dir); err != nil {
		return err
	}
	type file struct {
		name string
		data []byte
		perm os.FileMode
	}
	files := []file{{pki.FileCA, b.CA, 0o644}, {pki.FileServerCert, b.Cert, 0o644}}
	if rec != nil {
		files = append(files, file{rec.name, rec.data, 0o644})
	}
	for _, f := range append(files, file{pki.FileServerKey, b.Key, 0o600}) {
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

type recordFile struct {
	name string
	data []byte
}

// record asks a Recorder issuer for its record; nil for other issuers.
func record(iss Issuer, host string) (*recordFile, error) {
	r, ok := iss.(Recorder)
	if !ok {
		return nil, nil
	}
	name, data, err := r.Record(host)
	if err != nil {
		return nil, fmt.Errorf("record the CA: %w", err)
	}
	if name != filepath.Base(name) || name == pki.FileCA || name == pki.FileServerCert || name == pki.FileServerKey {
		return nil, fmt.Errorf("record the CA: bad file name %q", name)
	}
	return &recordFile{name: name, data: data}, nil
}

// fixModes tightens a kept TLS directory (0700) and key (0600).
func fixModes(dir string, dryRun bool) ([]string, error) {
	var fixed []string
	for _, f := range []struct {
		path string
		perm os.FileMode
	}{{dir, 0o700}, {filepath.Join(dir, pki.FileServerKey), 0o600}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			return nil, err
		}
		if fi.Mode().Perm() == f.perm {
			continue
		}
		fixed = append(fixed, fmt.Sprintf("%s to %o", f.path, f.perm))
		if !dryRun {
			if err := os.Chmod(f.path, f.perm); err != nil {
				return nil, err
			}
		}
	}
	return fixed, nil
}
