package preflight

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/versions"
)

// Requirements, as KubeKey documents them for KubeSphere nodes.
const (
	MinCPU       = 2
	MinMemoryMiB = 4 * 1024
	MinDiskGiB   = 40
)

// Options say what to check and how to reach the machine.
type Options struct {
	Root     host.Root
	Exec     host.Runner
	NodeName string
	Roles    []string
	// KubernetesVersion decides whether cgroup v1 is fatal (kubelet ≥ 1.35 refuses it).
	KubernetesVersion string
	// WarnOnly lists checks whose failure is only a warning.
	WarnOnly []string
	// DryRun skips checks that would measure the machine running the dry run rather than the node
	// (ports); they are reported as not checked.
	DryRun bool
	// Listen tries to bind a TCP address; nil means net.Listen. Tests replace it.
	Listen func(addr string) error
	// StatFS returns free bytes of a host path; nil means statfs(2).
	StatFS func(path string) (uint64, error)
}

// Result is one check's outcome.
type Result struct {
	Check   string `json:"check"`
	OK      bool   `json:"ok"`
	Warning bool   `json:"warning,omitempty"` // failed, but only a warning
	Message string `json:"message"`
}

// Report is the outcome of every check.
type Report []Result

// Failures are the failed checks that are not warnings.
func (r Report) Failures() Report {
	var out Report
	for _, x := range r {
		if !x.OK && !x.Warning {
			out = append(out, x)
		}
	}
	return out
}

// Error is a failed preflight; the CLI maps it to exit code 2.
type Error struct{ Failed Report }

func (e *Error) Error() string {
	parts := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		parts[i] = f.Check + ": " + f.Message
	}
	return "preflight: " + strings.Join(parts, "; ")
}

// Run performs every check and returns the report; err is an *Error when a check failed.
func Run(ctx context.Context, o Options) (Report, error) {
	if o.Listen == nil {
		o.Listen = func(addr string) error {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			return l.Close()
		}
	}
	if o.StatFS == nil {
		o.StatFS = func(path string) (uint64, error) {
			var st syscall.Statfs_t
			if err := syscall.Statfs(path, &st); err != nil {
				return 0, err
			}
			return st.Bavail * uint64(st.Bsize), nil
		}
	}
	checks := []struct {
		name string
		fn   func(context.Context, Options) (bool, string)
		// warnByDefault marks checks whose failure is a warning unless the node cannot work at
		// all: time sync is switched on by the os phase that follows.
		warnByDefault bool
	}{
		{"arch", checkArch, false},
		{"cpu", checkCPU, false},
		{"memory", checkMemory, false},
		{"disk", checkDisk, false},
		{"os", checkOS, false},
		{"time", checkTime, true},
		{"nameserver", checkNameserver, false},
		{"ports", checkPorts, false},
		{"hostname", checkHostname, false},
		{"cgroup", checkCgroup, false},
		{"existing-runtime", checkExistingRuntime, false},
	}
	var report Report
	for _, c := range checks {
		ok, msg := c.fn(ctx, o)
		r := Result{Check: c.name, OK: ok, Message: msg}
		if !ok && (c.warnByDefault || slices.Contains(o.WarnOnly, c.name)) {
			r.Warning = true
		}
		report = append(report, r)
	}
	if f := report.Failures(); len(f) > 0 {
		return report, &Error{Failed: f}
	}
	return report, nil
}

// Arch returns the Kubernetes architecture name of the machine (amd64, arm64) from uname -m.
func Arch(ctx context.Context, run host.Runner) (string, error) {
	out, err := run.Run(ctx, host.Cmd{Name: "uname", Args: []string{"-m"}})
	if err != nil {
		return "", err
	}
	switch m := strings.TrimSpace(string(out)); m {
	case "x86_64", "amd64":
		return "amd64", nil
	case "aarch64", "arm64":
		return "arm64", nil
	default:
		return "", fmt.Errorf("unsupported architecture %q: Kubernetes artifacts exist for x86_64 and aarch64", m)
	}
}

func checkArch(ctx context.Context, o Options) (bool, string) {
	a, err := Arch(ctx, o.Exec)
	if err != nil {
		return false, err.Error()
	}
	return true, a
}

func checkCPU(_ context.Context, o Options) (bool, string) {
	data, err := o.Root.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false, fmt.Sprintf("cannot read /proc/cpuinfo: %v", err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "processor") {
			n++
		}
	}
	if n < MinCPU {
		return false, fmt.Sprintf("%d CPU(s), KubeSphere needs at least %d", n, MinCPU)
	}
	return true, fmt.Sprintf("%d CPUs", n)
}

func checkMemory(_ context.Context, o Options) (bool, string) {
	data, err := o.Root.ReadFile("/proc/meminfo")
	if err != nil {
		return false, fmt.Sprintf("cannot read /proc/meminfo: %v", err)
	}
	m := regexp.MustCompile(`(?m)^MemTotal:\s+(\d+) kB`).FindSubmatch(data)
	if m == nil {
		return false, "no MemTotal in /proc/meminfo"
	}
	kb, _ := strconv.ParseUint(string(m[1]), 10, 64)
	mib := kb / 1024
	// The kernel reserves some memory, so a "4 GiB" machine reports a little less: allow 5%.
	if mib < MinMemoryMiB*95/100 {
		return false, fmt.Sprintf("%d MiB of memory, KubeSphere needs at least %d MiB", mib, MinMemoryMiB)
	}
	return true, fmt.Sprintf("%d MiB", mib)
}

func checkDisk(_ context.Context, o Options) (bool, string) {
	path := o.Root.Path("/var/lib")
	free, err := o.StatFS(path)
	if err != nil {
		path = o.Root.Path("/")
		if free, err = o.StatFS(path); err != nil {
			return false, fmt.Sprintf("cannot measure free space: %v", err)
		}
	}
	gib := free >> 30
	if gib < MinDiskGiB {
		return false, fmt.Sprintf("%d GiB free for /var/lib, at least %d GiB needed (images and etcd live there)", gib, MinDiskGiB)
	}
	return true, fmt.Sprintf("%d GiB free for /var/lib", gib)
}

// supportedOS is KubeKey's list of node operating systems.
var supportedOS = []struct {
	ids      []string
	min, max int
}{
	{[]string{"ubuntu"}, 16, 24},
	{[]string{"debian"}, 10, 12},
	{[]string{"centos", "rhel", "rocky", "almalinux"}, 7, 9},
	{[]string{"sles", "opensuse-leap", "opensuse"}, 15, 15},
}

func checkOS(_ context.Context, o Options) (bool, string) {
	osi, err := host.ReadOS(o.Root)
	if err != nil {
		return false, err.Error()
	}
	for _, s := range supportedOS {
		if slices.Contains(s.ids, osi.ID) {
			if m := osi.Major(); m >= s.min && m <= s.max {
				return true, osi.Pretty
			}
			return false, fmt.Sprintf("%s is not supported (%s %d–%d are)", osi.Pretty, osi.ID, s.min, s.max)
		}
	}
	return false, fmt.Sprintf("%q is not a supported OS (Ubuntu 16.04–24.04, Debian 10–12, CentOS/RHEL/Rocky/Alma 7–9, SLES/openSUSE 15)", osi.ID)
}

func checkTime(ctx context.Context, o Options) (bool, string) {
	out, err := o.Exec.Run(ctx, host.Cmd{Name: "timedatectl", Args: []string{"show", "-p", "NTPSynchronized", "--value"}})
	if err != nil {
		return false, "cannot ask timedatectl whether the clock is synchronised; certificates need correct time"
	}
	if strings.TrimSpace(string(out)) != "yes" {
		return false, "the clock is not synchronised yet (the os phase enables time sync); certificates need correct time"
	}
	return true, "synchronised"
}

func checkNameserver(_ context.Context, o Options) (bool, string) {
	data, err := o.Root.ReadFile("/etc/resolv.conf")
	if err != nil {
		return false, fmt.Sprintf("cannot read /etc/resolv.conf: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			return true, f[1]
		}
	}
	return false, "no nameserver in /etc/resolv.conf: kubelet and CoreDNS need one (set spec.hosts[].dns)"
}

// Ports returns the TCP ports a node of these roles must have free.
func Ports(roles []string) []int {
	if slices.Contains(roles, cluster.RoleControlPlane) {
		return []int{6443, 10250, 2379, 2380}
	}
	return []int{10250}
}

func checkPorts(_ context.Context, o Options) (bool, string) {
	ports := Ports(o.Roles)
	if o.DryRun {
		return true, fmt.Sprintf("not checked in a dry run (%v)", ports)
	}
	var busy []string
	for _, p := range ports {
		if err := o.Listen(fmt.Sprintf(":%d", p)); err != nil {
			busy = append(busy, strconv.Itoa(p))
		}
	}
	if len(busy) > 0 {
		return false, fmt.Sprintf("port(s) %s already in use: is another Kubernetes already running here?", strings.Join(busy, ", "))
	}
	return true, fmt.Sprintf("%v free", ports)
}

var rfc1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func checkHostname(_ context.Context, o Options) (bool, string) {
	if len(o.NodeName) > 63 || !rfc1123Label.MatchString(o.NodeName) {
		return false, fmt.Sprintf("node name %q is not a lowercase RFC 1123 label", o.NodeName)
	}
	return true, o.NodeName
}

func checkCgroup(_ context.Context, o Options) (bool, string) {
	if o.Root.Exists("/sys/fs/cgroup/cgroup.controllers") {
		return true, "cgroup v2"
	}
	switch versions.MustLookup(o.KubernetesVersion).CgroupV1 {
	case versions.CgroupV1Refused:
		return false, fmt.Sprintf("cgroup v1: kubelet %s refuses to run on it; boot with systemd.unified_cgroup_hierarchy=1", o.KubernetesVersion)
	case versions.CgroupV1Maintenance:
		return true, fmt.Sprintf("cgroup v1 (kubelet %s keeps it in maintenance mode; plan a move to v2)", o.KubernetesVersion)
	}
	return true, "cgroup v1"
}

// foreignRuntime lists binaries of a runtime or kubelet installed by something other than ksboot
// (which installs into /usr/local/bin); ksboot never replaces them silently.
var foreignRuntime = []string{"/usr/bin/kubelet", "/usr/bin/containerd", "/usr/bin/dockerd", "/usr/bin/crio", "/usr/bin/kubeadm"}

func checkExistingRuntime(_ context.Context, o Options) (bool, string) {
	var found []string
	for _, p := range foreignRuntime {
		if o.Root.Exists(p) {
			found = append(found, p)
		}
	}
	if len(found) > 0 {
		return false, fmt.Sprintf("found %s installed outside ksboot; remove it (or use a clean image): ksboot does not overwrite another runtime or kubelet", strings.Join(found, ", "))
	}
	return true, "none"
}
