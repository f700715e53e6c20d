package reset

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/install/runtime"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/systemd"
)

// Node paths the reset removes or looks at. They are constants on purpose: nothing that is
// removed is ever built from a value that could be empty.
const (
	CNIConfDir     = "/etc/cni/net.d"  // its entries are removed, the directory stays
	CNIStateDir    = "/var/lib/cni"    // IPAM allocations of the CNI plugins
	CalicoStateDir = "/var/lib/calico" // Calico's node name: a stale one breaks a renamed node
	KubernetesDir  = "/etc/kubernetes"
	KubeletDir     = "/var/lib/kubelet"
	EtcdDir        = "/var/lib/etcd"
	// ConfigDir is ksboot's configuration on the node: node.yaml and kubeadm.yaml (both hold
	// the bootstrap token), kubeadm patches, haproxy's configuration, add-on manifests.
	ConfigDir = "/etc/ksboot"
	// CloudDir is cloud-init's state; `cloud-init clean` empties it except its seed directory.
	CloudDir = "/var/lib/cloud"
	// KubeletWantsLink is the symlink `systemctl enable kubelet.service` makes.
	KubeletWantsLink = "/etc/systemd/system/multi-user.target.wants/kubelet.service"
	// IPVSTable is the kernel's IPVS table: three header lines, then the virtual services.
	IPVSTable = "/proc/net/ip_vs"
	// SysClassNet lists the network devices.
	SysClassNet = "/sys/class/net"
	// MountInfo is the host's mount table (read on the host, not under Options.Root: the
	// paths removed are host paths).
	MountInfo = "/proc/self/mountinfo"
)

// Links are the network devices that kube-proxy (IPVS mode), NodeLocal DNSCache and the CNI
// plugins (Flannel, Calico) create and that kubeadm reset leaves behind.
var Links = []string{"cni0", "flannel.1", "kube-ipvs0", "nodelocaldns", "tunl0", "vxlan.calico"}

// programDirs are where installed() looks for a program under the root.
var programDirs = []string{install.BinDir, install.SbinDir, "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// Options configure a reset.
type Options struct {
	// Root is the directory every node path is resolved under ("/" on a node).
	Root host.Root
	// Exec runs the commands; with a *host.DryRun nothing is run or removed.
	Exec host.Runner
	// Console receives one short line per action ("ksboot: reset: ...").
	Console io.Writer
	// Stream receives kubeadm reset's output as it runs; nil discards it (a failure still
	// quotes it).
	Stream io.Writer
	Logger *slog.Logger
	// MountInfo is the host's mount table, MountInfo unless a test names another file.
	MountInfo string
}

// Status is the outcome of one step.
type Status string

// Outcomes of a step.
const (
	Done        Status = "done"
	NothingToDo Status = "nothing to do"
	WouldDo     Status = "would do" // dry run
	Failed      Status = "failed"
)

// Step is what one step of the reset did.
type Step struct {
	Name   string
	Status Status
	// Actions are what the step did ("removed /etc/kubernetes"), or in a dry run would do.
	Actions []string
	// Notes say why there was nothing to do; they are printed only then.
	Notes []string
	// Warnings are things left alone on purpose or left over; they are always printed.
	Warnings []string
	Failures []Failure
}

// Failure is one action of a step that failed.
type Failure struct {
	What string // "deleting link flannel.1"
	Err  error
	// Manual is what to run by hand instead.
	Manual string
}

func (f Failure) String() string {
	s := f.What + ": " + f.Err.Error()
	if f.Manual != "" {
		s += " (by hand: " + f.Manual + ")"
	}
	return s
}

// Lines are the console lines of the step, without the "ksboot: reset: " prefix.
func (s Step) Lines() []string {
	var out []string
	for _, f := range s.Failures {
		out = append(out, s.Name+": failed: "+f.String())
	}
	for _, a := range s.Actions {
		out = append(out, s.Name+": "+a)
	}
	for _, w := range s.Warnings {
		out = append(out, s.Name+": warning: "+w)
	}
	if s.Status == NothingToDo {
		out = append(out, s.Name+": nothing to do ("+strings.Join(s.Notes, "; ")+")")
	}
	return out
}

// Result lists the steps in the order they ran.
type Result struct {
	Steps []Step
	// Node is the node name status.json held before the reset ("" when there was none).
	Node   string
	DryRun bool
}

// Failed lists the steps that failed.
func (r *Result) Failed() []Step {
	var out []Step
	for _, s := range r.Steps {
		if s.Status == Failed {
			out = append(out, s)
		}
	}
	return out
}

// NothingLeft reports whether no step found anything to do: the machine was already reset.
func (r *Result) NothingLeft() bool {
	for _, s := range r.Steps {
		if s.Status != NothingToDo {
			return false
		}
	}
	return true
}

// Error is a reset that did not finish: every failed step, with what to run by hand.
type Error struct {
	Failed []Step
}

func (e *Error) Error() string {
	names := make([]string, len(e.Failed))
	var b strings.Builder
	for i, s := range e.Failed {
		names[i] = s.Name
		for _, f := range s.Failures {
			fmt.Fprintf(&b, "; %s: %s", s.Name, f)
		}
	}
	return fmt.Sprintf("reset did not finish: %d step(s) failed (%s)%s; fix that or do it by hand, then run `ksboot agent reset --yes` again (it skips what is already undone)",
		len(e.Failed), strings.Join(names, ", "), b.String())
}

// Unwrap returns the underlying errors, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	var out []error
	for _, s := range e.Failed {
		for _, f := range s.Failures {
			out = append(out, f.Err)
		}
	}
	return out
}

type stepDef struct {
	name string
	run  func(context.Context, *resetter)
}

// steps run in this order; each one runs even when an earlier one failed.
var steps = []stepDef{
	{"bootstrap unit", stopBootstrap},
	{"kubeadm reset", kubeadmReset},
	{"kubelet", stopKubelet},
	{"network", cleanNetwork},
	{"kubernetes state", removeKubernetes},
	{"ksboot state", removeKsboot},
	{"cloud-init", cleanCloudInit},
}

// Run resets the node under o.Root: see the package documentation for the steps. On a control
// plane, kubeadm reset also removes the node's own etcd member from the cluster while etcd still
// answers: it finds the cluster's etcd through the API server (admin.conf) and removes this
// node's member before it deletes /var/lib/etcd, except when it is the only member. That is why
// kubeadm reset runs before any file is removed. kubeadm only warns when the removal fails; Run
// passes the warning on with the command to run on another control plane.
//
// A failed step does not stop the later ones: Run returns the Result of every step and, if any
// failed, an *Error naming each with what to run by hand.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Exec == nil {
		return nil, errors.New("reset: no command runner")
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.MountInfo == "" {
		o.MountInfo = MountInfo
	}
	_, dry := o.Exec.(*host.DryRun)
	r := &resetter{o: o, dry: dry}
	res := &Result{DryRun: dry}
	if st, err := state.Read(string(o.Root)); err != nil {
		o.Logger.Warn("cannot read the node's status; resetting anyway", "error", err)
	} else if st != nil {
		res.Node = st.Node
	}
	// Decided before kubeadm reset removes the static pod manifests.
	r.controlPlane = r.present(kubeadm.ManifestsDir + "/etcd.yaml")
	if dry {
		r.say("dry run: nothing is run or removed; the lines below say what would be")
	}
	for _, d := range steps {
		r.step = &Step{Name: d.name}
		d.run(ctx, r)
		s := *r.step
		switch {
		case len(s.Failures) > 0:
			s.Status = Failed
		case len(s.Actions) > 0 && dry:
			s.Status = WouldDo
		case len(s.Actions) > 0:
			s.Status = Done
		default:
			s.Status = NothingToDo
		}
		for _, l := range s.Lines() {
			r.say("%s", l)
		}
		// The console has said it all; the log keeps the outcome for --log-level debug.
		o.Logger.Debug("reset step", "step", s.Name, "status", string(s.Status), "actions", len(s.Actions), "failures", len(s.Failures))
		for _, f := range s.Failures {
			o.Logger.Debug("reset step failed", "step", s.Name, "what", f.What, "error", f.Err)
		}
		res.Steps = append(res.Steps, s)
	}

	r.say("kept: containerd and its images, the binaries in %s, %s and %s with their units and install records: the next bootstrap re-uses them",
		install.BinDir, install.SbinDir, install.CNIBinDir)
	if res.Node != "" {
		r.say("the Node object %s stays in the cluster: delete it with `kubectl delete node %s` where you have the cluster's admin.conf", res.Node, res.Node)
	}
	if failed := res.Failed(); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, s := range failed {
			names[i] = s.Name
		}
		r.say("%d of %d steps failed (%s): the machine is not reset yet", len(failed), len(res.Steps), strings.Join(names, ", "))
		return res, &Error{Failed: failed}
	}
	switch {
	case dry:
		r.say("dry run: nothing was changed")
		return res, nil
	case res.NothingLeft():
		r.say("nothing was left to reset on this machine")
	}
	r.say("reboot the machine with a seed attached to bootstrap it again")
	return res, nil
}

// resetter carries the options and the step being run.
type resetter struct {
	o            Options
	dry          bool
	controlPlane bool
	step         *Step
}

func (r *resetter) say(format string, args ...any) {
	fmt.Fprintf(r.o.Console, "ksboot: reset: "+format+"\n", args...)
}

// did records an action: past describes it done, base (after "would") in a dry run.
func (r *resetter) did(past, base string, args ...any) {
	if r.dry {
		r.step.Actions = append(r.step.Actions, "would "+fmt.Sprintf(base, args...))
		return
	}
	r.step.Actions = append(r.step.Actions, fmt.Sprintf(past, args...))
}

func (r *resetter) note(format string, args ...any) {
	r.step.Notes = append(r.step.Notes, fmt.Sprintf(format, args...))
}

func (r *resetter) warn(format string, args ...any) {
	r.step.Warnings = append(r.step.Warnings, fmt.Sprintf(format, args...))
}

func (r *resetter) fail(what string, err error, manual string) {
	r.step.Failures = append(r.step.Failures, Failure{What: what, Err: err, Manual: manual})
}

// exec runs c (prints it in a dry run); a failure is recorded with c itself as what to run by
// hand.
func (r *resetter) exec(ctx context.Context, what string, c host.Cmd) bool {
	if _, err := r.o.Exec.Run(ctx, c); err != nil {
		r.fail(what, err, c.String())
		return false
	}
	return true
}

// present reports whether a node path exists, without following a final symlink (a symlink
// under a test or dry-run root may point into the host).
func (r *resetter) present(p string) bool {
	_, err := os.Lstat(r.o.Root.Path(p))
	return err == nil
}

// installed reports whether a program is installed under the root.
func (r *resetter) installed(name string) bool {
	for _, d := range programDirs {
		if r.present(d + "/" + name) {
			return true
		}
	}
	return false
}

// activeState is what `systemctl is-active` says about a unit ("active", "activating",
// "inactive", "failed", …). It exits non-zero for anything but active, so only the output
// counts; none at all means "unknown", which the callers treat as running.
func (r *resetter) activeState(ctx context.Context, unit string) string {
	out, _ := r.o.Exec.Run(ctx, host.Cmd{Name: "systemctl", Args: []string{"is-active", unit}})
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

// stopUnit stops a unit unless it is already stopped. A unit waiting to restart
// (Restart=, "activating") counts as running: stopping it cancels the restart.
func (r *resetter) stopUnit(ctx context.Context, unit string) {
	if !r.dry {
		if st := r.activeState(ctx, unit); st == "inactive" || st == "failed" {
			r.note("%s not running", unit)
			return
		}
	}
	if r.exec(ctx, "stopping "+unit, host.Cmd{Name: "systemctl", Args: []string{"stop", unit}}) {
		r.did("stopped %s", "stop %s", unit)
	}
}

// stopBootstrap stops the bootstrap unit, so that it cannot restart in the middle of the reset
// (Restart=on-failure), and the announcement, which would keep showing the node as a member.
// Their unit files stay: without /etc/ksboot/node.yaml their conditions keep them from starting,
// and the next seed writes them again.
func stopBootstrap(ctx context.Context, r *resetter) {
	for _, u := range []struct{ name, path string }{
		{systemd.UnitName, systemd.UnitPath},
		{systemd.AnnounceName, systemd.AnnouncePath},
	} {
		if !r.present(u.path) {
			r.note("%s not installed", u.name)
			continue
		}
		r.stopUnit(ctx, u.name)
	}
}

// removeMemberByHand is the advice when kubeadm reset may have left this node's etcd member
// in the cluster (which then counts it for quorum).
const removeMemberByHand = "on another control plane, find this node in `etcdctl member list` and remove it with `etcdctl member remove <ID>`"

// kubeadmReset runs kubeadm reset when kubeadm is installed and left any state.
func kubeadmReset(ctx context.Context, r *resetter) {
	if !r.present(install.BinDir + "/kubeadm") {
		r.note("kubeadm not installed: skipped")
		return
	}
	if !r.present(KubernetesDir) && !r.present(KubeletDir) && !r.present(EtcdDir) {
		r.note("no kubeadm state left (%s, %s, %s)", KubernetesDir, KubeletDir, EtcdDir)
		return
	}
	c := host.Cmd{Name: "kubeadm", Args: []string{"reset", "-f", "--cri-socket", kubeadm.CRISocket}, Stream: r.o.Stream}
	if r.controlPlane && !r.dry {
		r.say("kubeadm reset: this control plane's etcd member is removed from the cluster first (takes a moment)")
	}
	out, err := r.o.Exec.Run(ctx, c)
	if err != nil {
		manual := c.String()
		if r.controlPlane {
			manual += "; then " + removeMemberByHand
		}
		r.fail("running kubeadm reset", err, manual)
		return
	}
	r.did("ran %s", "run %s", c.String())
	if bytes.Contains(out, []byte("Failed to remove etcd member")) {
		r.warn("kubeadm could not remove this control plane's etcd member (see its output above): " + removeMemberByHand)
	}
}

// stopKubelet stops and disables the kubelet, which otherwise restarts every 10 s without a
// configuration; the next install phase enables it again. Only a unit that ksboot installed
// (runtime.KubeletUnitPath) is touched, so a machine without it has nothing to do rather than
// systemctl's "not loaded" error.
func stopKubelet(ctx context.Context, r *resetter) {
	const unit = "kubelet.service"
	if !r.present(runtime.KubeletUnitPath) {
		r.note("%s not installed (%s)", unit, runtime.KubeletUnitPath)
		return
	}
	r.stopUnit(ctx, unit)
	if !r.present(KubeletWantsLink) {
		r.note("%s not enabled", unit)
		return
	}
	if r.exec(ctx, "disabling "+unit, host.Cmd{Name: "systemctl", Args: []string{"disable", unit}}) {
		r.did("disabled %s", "disable %s", unit)
	}
}

// cleanNetwork removes what kubeadm reset leaves of the cluster network, as its own output
// advises: CNI configuration and state, the devices, the iptables rules and the IPVS table.
func cleanNetwork(ctx context.Context, r *resetter) {
	r.removeEntries(CNIConfDir)
	r.removeTree(CNIStateDir)
	r.removeTree(CalicoStateDir)
	for _, l := range Links {
		if !r.present(SysClassNet + "/" + l) {
			continue
		}
		if r.exec(ctx, "deleting link "+l, host.Cmd{Name: "ip", Args: []string{"link", "delete", l}}) {
			r.did("deleted link %s", "delete link %s", l)
		}
	}
	flushIPTables(ctx, r)
	clearIPVS(ctx, r)
	switch {
	case len(r.step.Actions) > 0 || len(r.step.Failures) > 0:
	case len(r.step.Warnings) > 0:
		r.note("nothing else left")
	default:
		r.note("no CNI files, links, iptables rules or IPVS services left")
	}
}

// flushIPTables flushes the filter, nat and mangle tables and deletes their chains, table by
// table and only where rules are left. The filter table is left alone when its INPUT or OUTPUT
// policy is DROP (ufw, a hand-made firewall): flushing it would leave the policy with no rule
// to accept anything, SSH included. kube-proxy's and the CNI's rules are not persistent, so what
// is left goes at the reboot.
func flushIPTables(ctx context.Context, r *resetter) {
	if !r.installed("iptables") {
		r.note("iptables not installed")
		return
	}
	for _, table := range []string{"filter", "nat", "mangle"} {
		var sel []string
		if table != "filter" {
			sel = []string{"-t", table}
		}
		args := func(a ...string) []string { return append(slices.Clone(sel), a...) }
		if !r.dry {
			list := host.Cmd{Name: "iptables", Args: args("-S")}
			out, err := r.o.Exec.Run(ctx, list)
			if err != nil {
				r.fail("listing the iptables "+table+" table", err, host.Cmd{Name: "iptables", Args: args("-F")}.String()+" && "+
					host.Cmd{Name: "iptables", Args: args("-X")}.String())
				continue
			}
			rules, dropChain := parseRules(string(out))
			if table == "filter" && dropChain != "" {
				r.warn("the iptables filter table is left alone: its %s policy is DROP (a firewall such as ufw), and flushing it would cut this machine off; kube-proxy's and the CNI's rules there go at the reboot", dropChain)
				continue
			}
			if !rules {
				continue
			}
		}
		flushed := r.exec(ctx, "flushing the iptables "+table+" table", host.Cmd{Name: "iptables", Args: args("-F")})
		deleted := r.exec(ctx, "deleting the iptables "+table+" table's chains", host.Cmd{Name: "iptables", Args: args("-X")})
		if flushed && deleted {
			r.did("flushed the iptables %s table", "flush the iptables %s table", table)
		}
	}
}

// parseRules reads `iptables -S`: whether any rule or chain is there besides the built-in
// chains' policies, and which of INPUT and OUTPUT has the policy DROP.
func parseRules(out string) (rules bool, dropChain string) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0:
		case f[0] == "-P":
			if len(f) >= 3 && (f[1] == "INPUT" || f[1] == "OUTPUT") && f[2] == "DROP" && dropChain == "" {
				dropChain = f[1]
			}
		default:
			rules = true
		}
	}
	return rules, dropChain
}

// clearIPVS clears kube-proxy's IPVS virtual services when ipvsadm is installed.
func clearIPVS(ctx context.Context, r *resetter) {
	services := ipvsServices(r.o.Root)
	if !r.installed("ipvsadm") {
		if services > 0 {
			r.warn("%d IPVS service(s) left: ipvsadm is not installed; they go at the reboot", services)
		}
		return
	}
	if services == 0 && !r.dry {
		return
	}
	if r.exec(ctx, "clearing the IPVS table", host.Cmd{Name: "ipvsadm", Args: []string{"--clear"}}) {
		r.did("cleared the IPVS table", "clear the IPVS table")
	}
}

// ipvsServices counts the virtual services in the kernel's IPVS table (0 without ip_vs).
func ipvsServices(root host.Root) int {
	data, err := root.ReadFile(IPVSTable)
	if err != nil {
		return 0
	}
	n := 0
	for i, line := range strings.Split(string(data), "\n") {
		if i >= 3 && !strings.HasPrefix(strings.TrimSpace(line), "->") && strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n
}

// removeKubernetes removes what kubeadm reset leaves of Kubernetes and the admin kubeconfig the
// agent copied for root. kubeadm reset empties /etc/kubernetes/manifests, /etc/kubernetes/pki,
// /var/lib/kubelet and /var/lib/etcd and deletes its kubeconfigs, but keeps the directories and
// any other file; and when it failed, or never ran (a control plane stopped after ksboot placed
// the CA files in /etc/kubernetes/pki and before kubeadm init), everything is still there.
func removeKubernetes(_ context.Context, r *resetter) {
	r.removeTree(KubernetesDir)
	r.removeTree(KubeletDir)
	r.removeTree(EtcdDir)
	r.removeTree(kubeadm.RootKubeconfig)
	if len(r.step.Actions) == 0 && len(r.step.Failures) == 0 {
		r.note("no Kubernetes files left")
	}
}

// removeKsboot removes the agent's state (status.json, the bootstrap.complete and
// bootstrap.failed markers, kubeadm.done, downloads: anything in /var/lib/ksboot) except the
// install records, and /etc/ksboot. The markers matter: ksboot-bootstrap.service does not start
// while bootstrap.complete exists, and a phase recorded done would be skipped next time.
func removeKsboot(_ context.Context, r *resetter) {
	r.removeEntries(systemd.StateDir, path.Base(install.StateDir))
	r.removeTree(ConfigDir)
	if len(r.step.Actions) == 0 && len(r.step.Failures) == 0 {
		r.note("no ksboot state left")
	}
}

// cleanCloudInit makes cloud-init treat the next boot as a first boot, so that it applies the
// attached seed again: without it, a seed with the instance-id already applied (the same
// seed, or a generic worker seed) would be ignored.
func cleanCloudInit(ctx context.Context, r *resetter) {
	if !r.installed("cloud-init") {
		r.note("cloud-init not installed: skipped")
		return
	}
	if !r.cloudInitState() {
		r.note("cloud-init has no instance state left in %s", CloudDir)
		return
	}
	if r.exec(ctx, "cleaning cloud-init's state", host.Cmd{Name: "cloud-init", Args: []string{"clean"}}) {
		r.did("ran cloud-init clean: the next boot applies the attached seed again",
			"run cloud-init clean, so that the next boot applies the attached seed again")
	}
}

// cloudInitState reports whether /var/lib/cloud holds anything `cloud-init clean` removes
// (everything but the seed directory).
func (r *resetter) cloudInitState() bool {
	entries, err := os.ReadDir(r.o.Root.Path(CloudDir))
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.Name() != "seed" {
			return true
		}
	}
	return false
}

// removeEntries removes the entries of the constant directory dir, except those named in keep;
// dir itself stays.
func (r *resetter) removeEntries(dir string, keep ...string) {
	if err := checkPath(dir); err != nil {
		r.fail("removing the contents of "+dir, err, "")
		return
	}
	entries, err := os.ReadDir(r.o.Root.Path(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		r.fail("reading "+dir, err, "rm -rf "+dir+"/*")
		return
	}
	for _, e := range entries {
		name := e.Name()
		if slices.Contains(keep, name) {
			continue
		}
		if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
			continue // never from os.ReadDir; never removed if it were
		}
		r.removeTree(path.Join(dir, name))
	}
}

// removeTree removes the node path p and everything below it. It refuses when a file system is
// mounted below p (a pod volume kubeadm reset could not unmount: removing it would delete the
// volume's data); when p itself is a mount point (etcd on its own disk), it empties it.
func (r *resetter) removeTree(p string) {
	if err := checkPath(p); err != nil {
		r.fail("removing "+p, err, "")
		return
	}
	full := r.o.Root.Path(p)
	if _, err := os.Lstat(full); errors.Is(err, fs.ErrNotExist) {
		return
	} else if err != nil {
		r.fail("removing "+p, err, "rm -rf "+p)
		return
	}
	if r.dry {
		r.did("", "remove %s", p)
		return
	}
	mounts, err := readMounts(r.o.MountInfo)
	if err != nil {
		r.fail("removing "+p, fmt.Errorf("cannot make sure nothing is mounted below it: %w", err), "rm -rf "+p)
		return
	}
	if below := mountsBelow(mounts, full); len(below) > 0 {
		r.fail("removing "+p, fmt.Errorf("%d file system(s) still mounted below it, such as %s; nothing removed there", len(below), below[0]),
			"umount "+strings.Join(below, " ")+", then run `ksboot agent reset --yes` again")
		return
	}
	if slices.Contains(mounts, full) {
		entries, err := os.ReadDir(full)
		if err != nil {
			r.fail("emptying "+p, err, "rm -rf "+p+"/*")
			return
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(full, e.Name())); err != nil {
				r.fail("emptying "+p, err, "rm -rf "+p+"/*")
				return
			}
		}
		r.did("emptied %s (a mount point)", "empty %s (a mount point)", p)
		return
	}
	if err := os.RemoveAll(full); err != nil {
		r.fail("removing "+p, err, "rm -rf "+p)
		return
	}
	r.did("removed %s", "remove %s", p)
}

// checkPath refuses a path that is not a clean absolute path at least two levels deep: a
// programming error must never turn into removing "/" or "/etc".
func checkPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || strings.Count(p, "/") < 2 {
		return fmt.Errorf("refusing to remove %q: not a path ksboot owns", p)
	}
	return nil
}

// readMounts lists the mount points of a mountinfo file (proc(5)), cleaned.
func readMounts(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		out = append(out, filepath.Clean(unescapeMount(f[4])))
	}
	return out, sc.Err()
}

// unescapeMount decodes the octal escapes (\040 for a space) of a mountinfo path.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsBelow lists the mount points strictly below dir.
func mountsBelow(mounts []string, dir string) []string {
	var out []string
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for _, m := range mounts {
		if strings.HasPrefix(m, prefix) {
			out = append(out, m)
		}
	}
	return out
}
