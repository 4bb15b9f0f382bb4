package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// request is what the checks see of one API call.
type request struct {
	method string
	path   string // cleaned, without version prefix and query
	query  url.Values
	body   []byte
	limits *hostLimits
	// create is the container-create body once checkContainerCreate has
	// decoded it, so that the named-volume lookups do not decode it again.
	create *createBody
}

// hostLimits are the policy's exceptions to what a non-admin container may
// use of the host.
type hostLimits struct {
	hostPaths  []string // allowed_host_paths, cleaned
	logDrivers []string // defaultLogDrivers plus allowed_log_drivers
}

// defaultLogDrivers write where dockerd stores logs locally. Every other
// driver (syslog, gelf, fluentd, splunk, awslogs…) makes dockerd, in the
// host's network namespace, connect to an address the container's creator
// chooses: the host's loopback services included, whatever the container's
// own network is.
var defaultLogDrivers = []string{"json-file", "local", "journald", "none"}

// A check inspects a request an allow rule matched. It returns a finding
// (how the request would escalate, phrased to follow "may not METHOD PATH")
// or "" when the request is safe.
type check func(r *request) string

var checks = map[string]check{
	"container-create": checkContainerCreate,
	"container-update": checkContainerUpdate,
	"exec-create":      checkExecCreate,
	"volume-create":    checkVolumeCreate,
	"network-create":   checkNetworkCreate,
	"build":            checkBuild,
	"image-pull":       checkImagePull,
	"scoped-prune":     checkScopedPrune,
}

// decodeBody decodes the forwarded body with encoding/json, the decoder
// dockerd uses, so that case-insensitive keys and duplicate keys resolve the
// same way for the plugin as for the daemon. A missing body is a finding:
// dockerd leaves out bodies that are not application/json or reach 1 MiB,
// and a request with a hidden body cannot be judged (CVE-2024-41110).
func decodeBody(r *request, v any) string {
	if len(bytes.TrimSpace(r.body)) == 0 {
		return "without a JSON body the plugin can inspect (dockerd forwards only application/json bodies under 1 MiB)"
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		return "with a body that is not valid JSON for this endpoint"
	}
	return ""
}

// strSlice accepts a string or a list, like moby's strslice.StrSlice.
type strSlice []string

func (s *strSlice) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

type resources struct {
	CgroupParent      string
	Devices           []json.RawMessage
	DeviceRequests    []json.RawMessage
	DeviceCgroupRules []string
}

type hostConfig struct {
	resources
	Binds         []string
	Mounts        []mountSpec
	Privileged    bool
	PidMode       string
	IpcMode       string
	UTSMode       string
	NetworkMode   string
	UsernsMode    string
	CgroupnsMode  string
	CapAdd        strSlice
	SecurityOpt   []string
	Sysctls       map[string]string
	MaskedPaths   *[]string
	ReadonlyPaths *[]string
	VolumesFrom   []string
	LogConfig     struct{ Type string }
}

type mountSpec struct {
	Type          string
	Source        string
	VolumeOptions *struct {
		DriverConfig *struct {
			Name    string
			Options map[string]string
		}
	}
}

// createBody mirrors moby's ContainerConfigWrapper: "HostConfig" is the
// host config, but for old clients dockerd also reads host-config fields at
// the top level when "HostConfig" is absent. Both are inspected.
type createBody struct {
	hostConfig
	HostConfig *hostConfig
}

func checkContainerCreate(r *request) string {
	var b createBody
	if f := decodeBody(r, &b); f != "" {
		return f
	}
	r.create = &b
	if f := inspectHostConfig(&b.hostConfig, "", r.limits); f != "" {
		return f
	}
	if b.HostConfig != nil {
		return inspectHostConfig(b.HostConfig, "HostConfig.", r.limits)
	}
	return ""
}

func inspectHostConfig(h *hostConfig, prefix string, limits *hostLimits) string {
	allowed := limits.hostPaths
	if h.Privileged {
		return "with --privileged (" + prefix + "Privileged)"
	}
	for _, ns := range []struct{ name, flag, mode string }{
		{"PidMode", "--pid", h.PidMode},
		{"IpcMode", "--ipc", h.IpcMode},
		{"UTSMode", "--uts", h.UTSMode},
		{"NetworkMode", "--network", h.NetworkMode},
		{"UsernsMode", "--userns", h.UsernsMode},
		{"CgroupnsMode", "--cgroupns", h.CgroupnsMode},
	} {
		mode := strings.ToLower(strings.TrimSpace(ns.mode))
		if mode == "host" {
			return fmt.Sprintf("with the host's namespace (%s host, %s%s)", ns.flag, prefix, ns.name)
		}
		// Joining another container's namespace joins whatever it has,
		// the host's included, which the plugin cannot see from here.
		if strings.HasPrefix(mode, "container:") {
			return fmt.Sprintf("with another container's namespace (%s %s, %s%s)", ns.flag, ns.mode, prefix, ns.name)
		}
	}
	if len(h.VolumesFrom) > 0 {
		// The new container would inherit every mount of the named ones,
		// host paths and the docker socket included.
		return fmt.Sprintf("with the mounts of other containers (--volumes-from, %sVolumesFrom)", prefix)
	}
	if len(h.CapAdd) > 0 {
		return fmt.Sprintf("with added capabilities %s (--cap-add, %sCapAdd)", strings.Join(h.CapAdd, ","), prefix)
	}
	if f := inspectResources(&h.resources, prefix); f != "" {
		return f
	}
	for _, opt := range h.SecurityOpt {
		if f := insecureSecurityOpt(opt); f != "" {
			return fmt.Sprintf("with --security-opt %s (%sSecurityOpt)", f, prefix)
		}
	}
	if len(h.Sysctls) > 0 {
		return fmt.Sprintf("with sysctls (--sysctl, %sSysctls)", prefix)
	}
	if h.MaskedPaths != nil || h.ReadonlyPaths != nil {
		return fmt.Sprintf("with overridden masked or read-only /proc paths (%sMaskedPaths, %sReadonlyPaths)", prefix, prefix)
	}
	if d := h.LogConfig.Type; d != "" && !slices.Contains(limits.logDrivers, d) {
		return fmt.Sprintf("with the log driver %q (--log-driver, %sLogConfig.Type; dockerd itself would connect wherever its options say, from the host; allowed: %s)",
			d, prefix, strings.Join(limits.logDrivers, ", "))
	}
	for _, bind := range h.Binds {
		if src, ok := bindSource(bind); ok && !hostPathAllowed(src, allowed) {
			return fmt.Sprintf("with a bind mount of host path %s (-v, %sBinds)", src, prefix)
		}
	}
	for _, m := range h.Mounts {
		switch strings.ToLower(m.Type) {
		case "volume":
			if m.VolumeOptions != nil && m.VolumeOptions.DriverConfig != nil {
				dc := m.VolumeOptions.DriverConfig
				if f := localDeviceOptions(dc.Name, dc.Options, allowed); f != "" {
					return f + " (--mount, " + prefix + "Mounts)"
				}
			}
		case "tmpfs":
		case "bind":
			if !hostPathAllowed(m.Source, allowed) {
				return fmt.Sprintf("with a bind mount of host path %s (--mount type=bind, %sMounts)", m.Source, prefix)
			}
		default:
			return fmt.Sprintf("with a mount of type %q (%sMounts)", m.Type, prefix)
		}
	}
	return ""
}

func inspectResources(res *resources, prefix string) string {
	switch {
	case len(res.Devices) > 0:
		return fmt.Sprintf("with host devices (--device, %sDevices)", prefix)
	case len(res.DeviceRequests) > 0:
		return fmt.Sprintf("with device requests (--gpus, %sDeviceRequests)", prefix)
	case len(res.DeviceCgroupRules) > 0:
		return fmt.Sprintf("with device cgroup rules (--device-cgroup-rule, %sDeviceCgroupRules)", prefix)
	case res.CgroupParent != "":
		return fmt.Sprintf("with a cgroup parent (--cgroup-parent, %sCgroupParent)", prefix)
	}
	return ""
}

// insecureSecurityOpt reports an option that lifts confinement. A custom
// seccomp profile is refused too: it can allow every syscall.
func insecureSecurityOpt(opt string) string {
	o := strings.TrimSpace(opt)
	k, v, ok := strings.Cut(o, "=")
	if !ok {
		k, v, _ = strings.Cut(o, ":") // the old "label:disable" syntax
	}
	k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
	switch k {
	case "seccomp":
		if v != "" && !strings.EqualFold(v, "builtin") {
			if strings.EqualFold(v, "unconfined") {
				return "seccomp=unconfined"
			}
			return "seccomp=<custom profile>"
		}
	case "apparmor", "systempaths":
		if strings.EqualFold(v, "unconfined") {
			return k + "=unconfined"
		}
	case "label":
		lv := strings.ToLower(v)
		if lv == "disable" || strings.HasPrefix(lv, "type:") {
			return "label=" + v
		}
	}
	return ""
}

var volumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// bindSource returns the host path of a -v "src:dst[:opts]" entry, or false
// for an anonymous or named volume. A source that is not a valid volume name
// is a host path as far as safety goes.
func bindSource(bind string) (string, bool) {
	parts := strings.Split(bind, ":")
	if len(parts) < 2 {
		return "", false
	}
	if volumeName.MatchString(parts[0]) {
		return "", false
	}
	return parts[0], true
}

// hostPathAllowed reports whether p lies within an allowed host path, both
// as written and after resolving symlinks on this host, so that a symlink
// already planted inside an allowed directory cannot point the bind at /.
// One planted after the create is judged is followed at start: the policy
// documents that allowed paths must not be writable by containers.
func hostPathAllowed(p string, allowed []string) bool {
	if len(allowed) == 0 || !path.IsAbs(p) {
		return false
	}
	clean := path.Clean(p)
	if !within(clean, allowed) {
		return false
	}
	return within(resolveExisting(clean), allowed)
}

func within(p string, allowed []string) bool {
	for _, a := range allowed {
		if p == a || strings.HasPrefix(p, a+"/") {
			return true
		}
	}
	return false
}

// resolveExisting resolves symlinks in the longest existing prefix of p
// (dockerd creates missing bind sources).
func resolveExisting(p string) string {
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return path.Join(r, rest)
		} else if !errors.Is(err, os.ErrNotExist) {
			return "/" // unreadable: treat as not allowed unless / is allowed (it never is)
		}
		parent := path.Dir(cur)
		if parent == cur {
			return p
		}
		rest = path.Join(path.Base(cur), rest)
		cur = parent
	}
}

// localDeviceOptions refuses local-driver volumes that mount a device or a
// host directory ("type=none,o=bind,device=/"): they are bind mounts of the
// host in disguise. Other drivers are plugins the admin installed.
func localDeviceOptions(driver string, opts map[string]string, allowed []string) string {
	if driver != "" && driver != "local" {
		return ""
	}
	var device, o string
	found := false
	for k, v := range opts {
		switch strings.ToLower(k) {
		case "device":
			device, found = v, true
		case "o":
			o = v
		}
	}
	if !found {
		return ""
	}
	bind := false
	for _, opt := range strings.Split(o, ",") {
		if opt = strings.TrimSpace(opt); opt == "bind" || opt == "rbind" {
			bind = true
		}
	}
	if bind && hostPathAllowed(device, allowed) {
		return ""
	}
	return fmt.Sprintf("with a local volume that mounts %s (volume driver option device)", device)
}

func checkContainerUpdate(r *request) string {
	var res resources
	if f := decodeBody(r, &res); f != "" {
		return f
	}
	return inspectResources(&res, "")
}

func checkExecCreate(r *request) string {
	var b struct{ Privileged bool }
	if f := decodeBody(r, &b); f != "" {
		return f
	}
	if b.Privileged {
		return "with a privileged exec (docker exec --privileged, Privileged)"
	}
	return ""
}

func checkVolumeCreate(r *request) string {
	var b struct {
		Driver     string
		DriverOpts map[string]string
	}
	if f := decodeBody(r, &b); f != "" {
		return f
	}
	return localDeviceOptions(b.Driver, b.DriverOpts, r.limits.hostPaths)
}

func checkNetworkCreate(r *request) string {
	var b struct {
		Driver  string
		Options map[string]string
	}
	if f := decodeBody(r, &b); f != "" {
		return f
	}
	switch d := strings.ToLower(strings.TrimSpace(b.Driver)); d {
	case "host", "macvlan", "ipvlan":
		return fmt.Sprintf("with the %s network driver (it reaches the host's interfaces)", d)
	}
	for k := range b.Options {
		// Naming the bridge (an existing host bridge) or changing how
		// the gateway routes puts containers on the host's own network.
		switch strings.ToLower(k) {
		case "com.docker.network.bridge.name", "com.docker.network.bridge.gateway_mode_ipv4",
			"com.docker.network.bridge.gateway_mode_ipv6", "com.docker.network.bridge.inhibit_ipv4":
			return fmt.Sprintf("with the bridge option %s (it reaches the host's own network)", k)
		}
	}
	return ""
}

// checkBuild allows classic builds on the default or no network, from a
// context the client uploads: a remote context is fetched by dockerd from
// the host's network, and a cgroup parent escapes resource confinement.
func checkBuild(r *request) string {
	for _, v := range r.query["networkmode"] {
		switch m := strings.ToLower(strings.TrimSpace(v)); m {
		case "", "default", "bridge", "none":
		default:
			return fmt.Sprintf("with --network %s (networkmode)", v)
		}
	}
	if r.query.Get("remote") != "" {
		return "with a remote build context fetched by the daemon (remote)"
	}
	if r.query.Get("cgroupparent") != "" {
		return "with a cgroup parent (--cgroup-parent, cgroupparent)"
	}
	return ""
}

func checkImagePull(r *request) string {
	if r.query.Get("fromSrc") != "" || r.query.Get("fromImage") == "" {
		return "except to pull an image (docker import, fromSrc, is not allowed)"
	}
	return ""
}

// checkScopedPrune allows a prune only with a positive label filter: without
// one, a prune deletes every user's unused objects on the engine.
func checkScopedPrune(r *request) string {
	const finding = "without a label filter (engine-wide prune is for admin; add --filter label=...)"
	raw := r.query.Get("filters")
	if raw == "" {
		return finding
	}
	var asMap map[string]map[string]bool
	if err := json.Unmarshal([]byte(raw), &asMap); err == nil {
		for k, v := range asMap["label"] {
			if v && k != "" {
				return ""
			}
		}
		return finding
	}
	var asList map[string][]string
	if err := json.Unmarshal([]byte(raw), &asList); err == nil {
		for _, k := range asList["label"] {
			if k != "" {
				return ""
			}
		}
	}
	return finding
}

// evalCondition reports whether a deny_if condition holds.
func evalCondition(c Condition, r *request) (bool, string) {
	var val any
	var present bool
	if name, ok := strings.CutPrefix(c.Field, "query."); ok {
		if vs, ok := r.query[name]; ok && len(vs) > 0 {
			val, present = vs[0], vs[0] != ""
		}
	} else {
		var doc any
		if len(bytes.TrimSpace(r.body)) == 0 {
			return true, "without a JSON body the plugin can inspect"
		}
		if err := json.Unmarshal(r.body, &doc); err != nil {
			return true, "with a body that is not valid JSON"
		}
		val, present = lookupField(doc, strings.Split(c.Field, "."))
		present = present && !isZero(val)
	}
	msg := c.Message
	if msg == "" {
		msg = "with " + c.Field + " set"
	}
	if c.Present && present {
		return true, msg
	}
	if c.Equals != nil && present && fmt.Sprint(val) == fmt.Sprint(c.Equals) {
		return true, msg
	}
	return false, ""
}

// lookupField walks a decoded JSON document like encoding/json matches
// struct fields: an exact key wins, else a case-insensitive one. Two
// case-insensitive candidates are ambiguous and count as present, so a
// condition cannot be dodged by spelling.
func lookupField(doc any, fields []string) (any, bool) {
	cur := doc
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok := m[f]; ok {
			cur = v
			continue
		}
		var found []any
		for k, v := range m {
			if strings.EqualFold(k, f) {
				found = append(found, v)
			}
		}
		switch len(found) {
		case 0:
			return nil, false
		case 1:
			cur = found[0]
		default:
			return true, true
		}
	}
	return cur, true
}

func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case float64:
		return x == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}
