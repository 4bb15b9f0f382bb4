package authz

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Actions on existing objects. A role that may not create a privileged
// container must not be able to exec into, attach to or start one that an
// admin created either: the container's configuration, not the request,
// decides what the action reaches. The plugin is shown only the request,
// so it asks dockerd, on its local unix socket, how the container was
// created, and judges that configuration with the container-create rules.
// Likewise a named volume that an admin created with bind options is a host
// mount in disguise, so the volumes a new container names are looked up.

// DefaultDockerSocket is where dockerd serves its local API.
const DefaultDockerSocket = "/var/run/docker.sock"

// ContainerLookup tells the plugin how existing objects were created. Errors
// deny the request (fail closed); ErrNoSuchObject says the object does not
// exist.
type ContainerLookup interface {
	// Container returns the container that ref (a name, an ID or a unique
	// ID prefix, as dockerd resolves them) names.
	Container(ctx context.Context, ref string) (*ContainerInfo, error)
	// ExecContainer returns the ID of the container an exec instance runs in.
	ExecContainer(ctx context.Context, execID string) (string, error)
	// Volume returns a volume's driver and options.
	Volume(ctx context.Context, name string) (*VolumeInfo, error)
}

// ErrNoSuchObject means dockerd does not know the container, exec or volume.
var ErrNoSuchObject = errors.New("no such object")

// ContainerInfo is what the plugin judges of an existing container.
type ContainerInfo struct {
	ID         string
	Name       string
	HostConfig hostConfig
}

// VolumeInfo is what the plugin judges of an existing volume.
type VolumeInfo struct {
	Name    string
	Driver  string
	Options map[string]string
}

// lookupHeader marks the plugin's own requests to dockerd, so that it can
// allow them under --deny-local: dockerd sends every request, the plugin's
// own included, through the plugin.
const lookupHeader = "X-Dockca-Lookup"

// ownLookups is implemented by lookups that send their requests through
// dockerd, and so through the plugin itself.
type ownLookups interface {
	isOwnLookup(method string, segs []string, headers map[string]string) bool
}

// DockerSocket looks objects up on dockerd's local unix socket.
type DockerSocket struct {
	path   string
	client *http.Client
	nonce  string
}

// NewDockerSocket returns a lookup on the unix socket at path (default
// DefaultDockerSocket).
func NewDockerSocket(path string) *DockerSocket {
	if path == "" {
		path = DefaultDockerSocket
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return &DockerSocket{path: path, nonce: hex.EncodeToString(b), client: unixHTTPClient(path, 5*time.Second)}
}

// isOwnLookup reports whether a request without a certificate is one of the
// plugin's lookups: a GET of a container, an exec instance or a volume that
// carries this process's nonce.
func (s *DockerSocket) isOwnLookup(method string, segs []string, headers map[string]string) bool {
	if method != http.MethodGet {
		return false
	}
	switch {
	case len(segs) >= 3 && segs[0] == "containers" && segs[len(segs)-1] == "json":
	case len(segs) == 3 && segs[0] == "exec" && segs[2] == "json":
	case len(segs) == 2 && segs[0] == "volumes":
	default:
		return false
	}
	for k, v := range headers {
		if strings.EqualFold(k, lookupHeader) {
			return subtle.ConstantTimeCompare([]byte(v), []byte(s.nonce)) == 1
		}
	}
	return false
}

func (s *DockerSocket) get(ctx context.Context, p string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+p, nil)
	if err != nil {
		return err
	}
	req.Header.Set(lookupHeader, s.nonce)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("dockerd's socket %s: %w", s.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("dockerd's socket %s: %w", s.path, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return ErrNoSuchObject
	case resp.StatusCode != http.StatusOK:
		var m struct{ Message string }
		_ = json.Unmarshal(body, &m)
		return fmt.Errorf("dockerd's socket %s answered %s: %s", s.path, resp.Status, m.Message)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("dockerd's socket %s: %w", s.path, err)
	}
	return nil
}

// Container implements ContainerLookup.
func (s *DockerSocket) Container(ctx context.Context, ref string) (*ContainerInfo, error) {
	var c ContainerInfo
	if err := s.get(ctx, "/containers/"+url.PathEscape(ref)+"/json", &c); err != nil {
		return nil, err
	}
	if c.ID == "" {
		return nil, fmt.Errorf("dockerd's socket %s: no ID in the answer for container %q", s.path, ref)
	}
	return &c, nil
}

// ExecContainer implements ContainerLookup.
func (s *DockerSocket) ExecContainer(ctx context.Context, execID string) (string, error) {
	var e struct{ ContainerID string }
	if err := s.get(ctx, "/exec/"+url.PathEscape(execID)+"/json", &e); err != nil {
		return "", err
	}
	if e.ContainerID == "" {
		return "", fmt.Errorf("dockerd's socket %s: exec %q names no container", s.path, execID)
	}
	return e.ContainerID, nil
}

// Volume implements ContainerLookup.
func (s *DockerSocket) Volume(ctx context.Context, name string) (*VolumeInfo, error) {
	var v VolumeInfo
	if err := s.get(ctx, "/volumes/"+url.PathEscape(name), &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// containerCache keeps the verdict on a container's configuration by full
// ID. IDs are never reused and the judged settings cannot change after
// create, except through /update, which empties the cache whoever sends it
// (every request, local root's too, passes through the plugin).
type containerCache struct {
	mu      sync.Mutex
	entries map[string]containerVerdict
}

type containerVerdict struct {
	name    string
	finding string
	at      time.Time
}

const (
	maxContainerCache = 4096
	containerCacheTTL = time.Minute
)

var fullID = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (c *containerCache) get(id string, now time.Time) (containerVerdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.entries[id]
	if !ok || now.Sub(v.at) > containerCacheTTL {
		return containerVerdict{}, false
	}
	return v, true
}

func (c *containerCache) put(id string, v containerVerdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxContainerCache {
		c.entries = map[string]containerVerdict{}
	}
	c.entries[id] = v
}

func (c *containerCache) clear() {
	c.mu.Lock()
	c.entries = nil
	c.mu.Unlock()
}

// targetOf says which existing container a request acts on: ref is what
// the request names it by (or an exec ID when exec is true). GET and HEAD
// requests only read, except the websocket attach, which writes to the
// container's stdin.
func targetOf(method string, segs []string, q url.Values) (ref string, exec, ok bool) {
	n := len(segs)
	switch {
	case n >= 2 && segs[0] == "containers":
		switch segs[1] {
		case "create", "json", "prune":
			if n == 2 {
				return "", false, false
			}
		}
		if method == http.MethodGet || method == http.MethodHead {
			if n >= 4 && segs[n-2] == "attach" && segs[n-1] == "ws" {
				return strings.Join(segs[1:n-2], "/"), false, true
			}
			return "", false, false
		}
		if method == http.MethodDelete || n == 2 {
			return strings.Join(segs[1:], "/"), false, true
		}
		return strings.Join(segs[1:n-1], "/"), false, true
	case n == 3 && segs[0] == "exec" && method != http.MethodGet && method != http.MethodHead:
		return segs[1], true, true
	case n == 1 && segs[0] == "commit" && method == http.MethodPost:
		return q.Get("container"), false, true
	}
	return "", false, false
}

// existingFinding normalises an inspected host config before it is judged
// with the create rules: inspect fills in daemon defaults that a create
// request leaves out. The cgroup namespace defaults to the host's on cgroup
// v1 (and escapes nothing without the privileges judged separately), and
// the masked and read-only /proc paths are listed in full by default; only
// their removal is a finding.
func existingFinding(h hostConfig, limits *hostLimits) string {
	h.CgroupnsMode = ""
	if h.MaskedPaths != nil && len(*h.MaskedPaths) > 0 {
		h.MaskedPaths = nil
	}
	if h.ReadonlyPaths != nil && len(*h.ReadonlyPaths) > 0 {
		h.ReadonlyPaths = nil
	}
	return inspectHostConfig(&h, "HostConfig.", limits)
}

// judgeTarget denies an action on an existing container whose configuration
// the role could not have created. It returns "" to allow.
func (a *Authorizer) judgeTarget(ctx context.Context, r *request) string {
	ref, isExec, ok := targetOf(r.method, splitPath(r.path), r.query)
	if !ok {
		return ""
	}
	if ref == "" {
		return "without naming a container"
	}
	if a.containers == nil {
		return "on an existing container: this plugin has no dockerd socket to look containers up, so it cannot judge them"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if isExec {
		id, err := a.containers.ExecContainer(ctx, ref)
		if err != nil {
			return lookupFailure("exec instance", ref, err)
		}
		ref = id
	}
	now := a.now()
	if fullID.MatchString(ref) {
		if v, ok := a.cache.get(ref, now); ok {
			return targetFinding(v)
		}
	}
	c, err := a.containers.Container(ctx, ref)
	if err != nil {
		return lookupFailure("container", ref, err)
	}
	v := containerVerdict{name: strings.TrimPrefix(c.Name, "/"), at: now}
	v.finding = existingFinding(c.HostConfig, r.limits)
	if v.finding == "" {
		f, err := a.namedVolumeFinding(ctx, &c.HostConfig, r.limits)
		if err != nil {
			return fmt.Sprintf("on container %q: %v", v.name, err)
		}
		v.finding = f
	}
	a.cache.put(c.ID, v)
	return targetFinding(v)
}

func targetFinding(v containerVerdict) string {
	if v.finding == "" {
		return ""
	}
	return fmt.Sprintf("on container %q, which was created %s", v.name, v.finding)
}

func lookupFailure(what, ref string, err error) string {
	if errors.Is(err, ErrNoSuchObject) {
		return fmt.Sprintf("on %s %q: dockerd does not know it", what, ref)
	}
	return fmt.Sprintf("on %s %q: its configuration cannot be looked up (%v), so the request is denied", what, ref, err)
}

// namedVolumeFinding looks up the named volumes a host config mounts and
// refuses local volumes that mount a device or a host directory, as
// volume-create refuses to create them. A lookup that fails is an error
// (deny, and do not cache).
func (a *Authorizer) namedVolumeFinding(ctx context.Context, h *hostConfig, limits *hostLimits) (string, error) {
	var names []string
	for _, b := range h.Binds {
		parts := strings.Split(b, ":")
		if len(parts) >= 2 && volumeName.MatchString(parts[0]) {
			names = append(names, parts[0])
		}
	}
	for _, m := range h.Mounts {
		if strings.EqualFold(m.Type, "volume") && m.Source != "" && m.VolumeOptions == nil {
			names = append(names, m.Source)
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	if a.containers == nil {
		return "", errors.New("this plugin has no dockerd socket to look its named volumes up, so it cannot judge them")
	}
	for _, n := range names {
		v, err := a.containers.Volume(ctx, n)
		if errors.Is(err, ErrNoSuchObject) {
			continue // dockerd creates it as a plain local volume
		}
		if err != nil {
			return "", fmt.Errorf("volume %q cannot be looked up (%v), so the request is denied", n, err)
		}
		if f := localDeviceOptions(v.Driver, v.Options, limits.hostPaths); f != "" {
			return fmt.Sprintf("with volume %q, %s", n, strings.TrimPrefix(f, "with ")), nil
		}
	}
	return "", nil
}

// createVolumeFinding judges the named volumes of a container create that
// the create rules allowed.
func (a *Authorizer) createVolumeFinding(ctx context.Context, r *request) string {
	b := r.create
	if b == nil { // a policy whose create rule runs no container-create check
		b = &createBody{}
		if json.Unmarshal(r.body, b) != nil {
			return "with a body that is not valid JSON for this endpoint"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, h := range []*hostConfig{&b.hostConfig, b.HostConfig} {
		if h == nil {
			continue
		}
		f, err := a.namedVolumeFinding(ctx, h, r.limits)
		if err != nil {
			return "with named volumes: " + err.Error()
		}
		if f != "" {
			return f
		}
	}
	return ""
}
