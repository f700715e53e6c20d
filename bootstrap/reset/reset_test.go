package reset

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/install/runtime"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/systemd"
)

const ipvsHeader = "IP Virtual Server version 1.2.1 (size=4096)\n" +
	"Prot LocalAddress:Port Scheduler Flags\n" +
	"  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"

// Files a bootstrapped control plane holds that the reset must remove.
var removed = []string{
	"/etc/cni/net.d/10-flannel.conflist",
	"/var/lib/cni/networks/cbr0/10.233.64.2",
	"/var/lib/calico/nodename",
	"/etc/kubernetes/pki/ca.crt",
	"/etc/kubernetes/pki/ca.key",
	"/etc/kubernetes/admin.conf",
	"/etc/kubernetes/manifests/etcd.yaml",
	"/etc/kubernetes/manifests/kube-apiserver.yaml",
	"/var/lib/kubelet/config.yaml",
	"/var/lib/etcd/member/snap/db",
	systemd.CompleteMarker,
	kubeadm.DoneMarker,
	install.DownloadDir + "/containerd.tar.gz.part",
	systemd.NodeConfigPath,
	kubeadm.ConfigPath,
	kubeadm.PatchesDir + "/etcd0+json.yaml",
	kubeadm.RootKubeconfig,
	"/var/lib/cloud/instances/iid-1/user-data.txt",
}

// Files the reset must keep: units, binaries, containerd and its images, install records.
var kept = []string{
	systemd.UnitPath,
	systemd.AnnouncePath,
	runtime.KubeletUnitPath,
	runtime.KubeadmDropInPath,
	runtime.ContainerdUnitPath,
	runtime.ContainerdConfigPath,
	install.BinDir + "/kubeadm",
	install.BinDir + "/kubelet",
	install.BinDir + "/kubectl",
	install.BinDir + "/containerd",
	systemd.AgentPath,
	install.SbinDir + "/runc",
	install.CNIBinDir + "/bridge",
	install.StateDir + "/kubeadm.json",
	"/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/abc",
	"/usr/sbin/iptables",
	"/usr/sbin/ipvsadm",
	"/usr/bin/cloud-init",
	SysClassNet + "/eth0/operstate",
}

// node is a temporary root holding what a bootstrapped control plane holds.
func node(t *testing.T) host.Root {
	t.Helper()
	root := host.Root(t.TempDir())
	for _, p := range append(slices.Clone(removed), kept...) {
		write(t, root, p, "x\n")
	}
	for _, l := range []string{"cni0", "flannel.1", "kube-ipvs0"} {
		write(t, root, SysClassNet+"/"+l+"/operstate", "up\n")
	}
	write(t, root, IPVSTable, ipvsHeader+"TCP  0A600001:01BB rr\n  -> 0A000001:192B      Masq    1      0          0\n")
	if err := state.Write(string(root), &state.Status{Cluster: "sample", Node: "cp1", Phase: "kubesphere"}); err != nil {
		t.Fatal(err)
	}
	// Symlinks with absolute targets, as systemd and cloud-init make them.
	symlink(t, root, runtime.KubeletUnitPath, KubeletWantsLink)
	symlink(t, root, "/var/lib/cloud/instances/iid-1", "/var/lib/cloud/instance")
	return root
}

func write(t *testing.T, root host.Root, p, data string) {
	t.Helper()
	if _, err := root.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, root host.Root, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(root.Path(link)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, root.Path(link)); err != nil {
		t.Fatal(err)
	}
}

func exists(root host.Root, p string) bool {
	_, err := os.Lstat(root.Path(p))
	return err == nil
}

// noMounts is a mount table with nothing mounted under the test's root.
func noMounts(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(f, []byte("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// gone returns a stub action that removes node paths, standing in for a command's effects.
func gone(root host.Root, output string, paths ...string) func() (string, error) {
	return func() (string, error) {
		for _, p := range paths {
			if err := os.RemoveAll(root.Path(p)); err != nil {
				return "", err
			}
		}
		return output, nil
	}
}

// registerFirstRun expects the commands of a reset of node(t), in order; kubeadmErr and
// flannelErr make those commands fail.
func registerFirstRun(stub *hosttest.Stub, root host.Root, kubeadmErr, flannelErr error) {
	exit3 := errors.New("exit status 3")
	stub.Register(`^systemctl is-active ksboot-bootstrap\.service$`, "activating\n", exit3)
	stub.Register(`^systemctl stop ksboot-bootstrap\.service$`, "", nil)
	stub.Register(`^systemctl is-active ksboot-announce\.service$`, "active\n", nil)
	stub.Register(`^systemctl stop ksboot-announce\.service$`, "", nil)
	if kubeadmErr != nil {
		stub.Register(`^kubeadm reset -f --cri-socket unix:///run/containerd/containerd\.sock$`, "[reset] etcd cluster is not healthy", kubeadmErr)
	} else {
		// kubeadm reset empties the manifests, pki, kubelet and etcd directories and removes its
		// kubeconfigs, but leaves the directories themselves.
		stub.RegisterDo(`^kubeadm reset -f --cri-socket unix:///run/containerd/containerd\.sock$`, gone(root, "[reset] Deleted contents of the etcd data directory: /var/lib/etcd\n",
			"/etc/kubernetes/manifests/etcd.yaml", "/etc/kubernetes/manifests/kube-apiserver.yaml", "/etc/kubernetes/admin.conf",
			"/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.key", "/var/lib/kubelet/config.yaml", "/var/lib/etcd/member"))
	}
	stub.Register(`^systemctl is-active kubelet\.service$`, "activating\n", exit3)
	stub.Register(`^systemctl stop kubelet\.service$`, "", nil)
	stub.RegisterDo(`^systemctl disable kubelet\.service$`, gone(root, "Removed \"/etc/systemd/system/multi-user.target.wants/kubelet.service\".\n", KubeletWantsLink))
	stub.RegisterDo(`^ip link delete cni0$`, gone(root, "", SysClassNet+"/cni0"))
	if flannelErr != nil {
		stub.Register(`^ip link delete flannel\.1$`, "RTNETLINK answers: Operation not permitted", flannelErr)
	} else {
		stub.RegisterDo(`^ip link delete flannel\.1$`, gone(root, "", SysClassNet+"/flannel.1"))
	}
	stub.RegisterDo(`^ip link delete kube-ipvs0$`, gone(root, "", SysClassNet+"/kube-ipvs0"))
	stub.Register(`^iptables -S$`, "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-N KUBE-FIREWALL\n-A INPUT -j KUBE-FIREWALL\n", nil)
	stub.Register(`^iptables -F$`, "", nil)
	stub.Register(`^iptables -X$`, "", nil)
	stub.Register(`^iptables -t nat -S$`, "-P PREROUTING ACCEPT\n-P POSTROUTING ACCEPT\n-N KUBE-SERVICES\n-A PREROUTING -j KUBE-SERVICES\n", nil)
	stub.Register(`^iptables -t nat -F$`, "", nil)
	stub.Register(`^iptables -t nat -X$`, "", nil)
	stub.Register(`^iptables -t mangle -S$`, "-P PREROUTING ACCEPT\n-P OUTPUT ACCEPT\n", nil)
	stub.RegisterDo(`^ipvsadm --clear$`, func() (string, error) {
		return "", os.WriteFile(root.Path(IPVSTable), []byte(ipvsHeader), 0o644)
	})
	stub.RegisterDo(`^cloud-init clean$`, gone(root, "", "/var/lib/cloud/instances", "/var/lib/cloud/instance"))
}

var firstRunCalls = []string{
	"systemctl is-active ksboot-bootstrap.service",
	"systemctl stop ksboot-bootstrap.service",
	"systemctl is-active ksboot-announce.service",
	"systemctl stop ksboot-announce.service",
	"kubeadm reset -f --cri-socket unix:///run/containerd/containerd.sock",
	"systemctl is-active kubelet.service",
	"systemctl stop kubelet.service",
	"systemctl disable kubelet.service",
	"ip link delete cni0",
	"ip link delete flannel.1",
	"ip link delete kube-ipvs0",
	"iptables -S",
	"iptables -F",
	"iptables -X",
	"iptables -t nat -S",
	"iptables -t nat -F",
	"iptables -t nat -X",
	"iptables -t mangle -S",
	"ipvsadm --clear",
	"cloud-init clean",
}

// streaming passes a command's output to its Stream, as host.Real does.
type streaming struct{ host.Runner }

func (s streaming) Run(ctx context.Context, c host.Cmd) ([]byte, error) {
	out, err := s.Runner.Run(ctx, c)
	if c.Stream != nil {
		_, _ = c.Stream.Write(out)
	}
	return out, err
}

func statuses(res *Result) map[string]Status {
	m := map[string]Status{}
	for _, s := range res.Steps {
		m[s.Name] = s.Status
	}
	return m
}

// TestResetNode resets a bootstrapped control plane: the commands run in order, the cluster's
// and ksboot's state is gone, units, binaries, containerd and the install records stay, and a
// second run finds nothing left.
func TestResetNode(t *testing.T) {
	root := node(t)
	mounts := noMounts(t)
	stub := hosttest.NewStub(t)
	registerFirstRun(stub, root, nil, nil)
	var console, stream bytes.Buffer
	res, err := Run(context.Background(), Options{Root: root, Exec: streaming{stub}, Console: &console, Stream: &stream, MountInfo: mounts})
	if err != nil {
		t.Fatalf("reset: %v\n%s", err, console.String())
	}
	if !slices.Equal(stub.Calls, firstRunCalls) {
		t.Errorf("commands:\n got %q\nwant %q", stub.Calls, firstRunCalls)
	}
	for _, p := range removed {
		if exists(root, p) {
			t.Errorf("%s is still there after the reset", p)
		}
	}
	for _, p := range []string{KubernetesDir, KubeletDir, EtcdDir, CNIStateDir, CalicoStateDir, ConfigDir, state.StatusFile,
		install.DownloadDir, "/var/lib/cloud/instance", KubeletWantsLink} {
		if exists(root, "/"+strings.TrimPrefix(p, "/")) {
			t.Errorf("%s is still there after the reset", p)
		}
	}
	for _, p := range kept {
		if !exists(root, p) {
			t.Errorf("%s was removed; the reset keeps it", p)
		}
	}
	if !exists(root, CNIConfDir) || !exists(root, systemd.StateDir) {
		t.Errorf("the reset removed %s or %s themselves; it empties them", CNIConfDir, systemd.StateDir)
	}
	for name, st := range statuses(res) {
		if st != Done {
			t.Errorf("step %s: %s, want done", name, st)
		}
	}
	if len(res.Steps) != len(steps) || res.Node != "cp1" || res.NothingLeft() {
		t.Errorf("result: %d steps, node %q, nothing left %v", len(res.Steps), res.Node, res.NothingLeft())
	}
	out := console.String()
	for _, want := range []string{
		"ksboot: reset: bootstrap unit: stopped ksboot-bootstrap.service\n",
		"ksboot: reset: kubeadm reset: this control plane's etcd member is removed from the cluster first",
		"ksboot: reset: kubeadm reset: ran kubeadm reset -f --cri-socket unix:///run/containerd/containerd.sock\n",
		"ksboot: reset: kubelet: disabled kubelet.service\n",
		"ksboot: reset: network: deleted link flannel.1\n",
		"ksboot: reset: network: flushed the iptables nat table\n",
		"ksboot: reset: network: cleared the IPVS table\n",
		"ksboot: reset: kubernetes state: removed /var/lib/etcd\n",
		"ksboot: reset: ksboot state: removed /var/lib/ksboot/status.json\n",
		"ksboot: reset: ksboot state: removed /etc/ksboot\n",
		"ksboot: reset: cloud-init: ran cloud-init clean",
		"kept: containerd and its images",
		"the Node object cp1 stays in the cluster",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "mangle") || !strings.Contains(out, "with their units and install records: the next bootstrap re-uses them") {
		t.Errorf("console: the mangle table had no rules, and the install records are kept:\n%s", out)
	}
	if !strings.HasSuffix(out, "ksboot: reset: reboot the machine with a seed attached to bootstrap it again\n") {
		t.Errorf("console does not end with the reboot advice:\n%s", out)
	}
	if !strings.Contains(stream.String(), "Deleted contents of the etcd data directory") {
		t.Errorf("kubeadm's output was not streamed: %q", stream.String())
	}

	// Again on the reset machine: only read-only queries, and nothing to do anywhere.
	stub2 := hosttest.NewStub(t)
	exit3 := errors.New("exit status 3")
	stub2.Register(`^systemctl is-active ksboot-bootstrap\.service$`, "inactive\n", exit3)
	stub2.Register(`^systemctl is-active ksboot-announce\.service$`, "inactive\n", exit3)
	stub2.Register(`^systemctl is-active kubelet\.service$`, "inactive\n", exit3)
	stub2.Register(`^iptables -S$`, "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n", nil)
	stub2.Register(`^iptables -t nat -S$`, "-P PREROUTING ACCEPT\n-P POSTROUTING ACCEPT\n", nil)
	stub2.Register(`^iptables -t mangle -S$`, "-P PREROUTING ACCEPT\n", nil)
	console.Reset()
	res, err = Run(context.Background(), Options{Root: root, Exec: stub2, Console: &console, MountInfo: mounts})
	if err != nil {
		t.Fatalf("second reset: %v\n%s", err, console.String())
	}
	if !res.NothingLeft() || res.Node != "" {
		t.Errorf("second reset: %v, node %q\n%s", statuses(res), res.Node, console.String())
	}
	out = console.String()
	for _, want := range []string{
		"ksboot: reset: kubeadm reset: nothing to do (no kubeadm state left",
		"ksboot: reset: kubelet: nothing to do (kubelet.service not running; kubelet.service not enabled)\n",
		"ksboot: reset: cloud-init: nothing to do (cloud-init has no instance state left in /var/lib/cloud)\n",
		"ksboot: reset: nothing was left to reset on this machine\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("second run's console lacks %q:\n%s", want, out)
		}
	}
	for _, p := range kept {
		if !exists(root, p) {
			t.Errorf("%s was removed by the second run", p)
		}
	}
}

// TestResetContinuesAfterFailure: a failing kubeadm reset and a link that cannot be deleted do
// not stop the later steps, and the error names both with what to run by hand.
func TestResetContinuesAfterFailure(t *testing.T) {
	root := node(t)
	stub := hosttest.NewStub(t)
	registerFirstRun(stub, root, errors.New("exit status 1"), errors.New("exit status 2"))
	var console bytes.Buffer
	res, err := Run(context.Background(), Options{Root: root, Exec: stub, Console: &console, MountInfo: noMounts(t)})
	var re *Error
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want a *reset.Error\n%s", err, console.String())
	}
	if !slices.Equal(stub.Calls, firstRunCalls) {
		t.Errorf("commands after the failures:\n got %q\nwant %q", stub.Calls, firstRunCalls)
	}
	msg := err.Error()
	for _, want := range []string{
		"2 step(s) failed (kubeadm reset, network)",
		"by hand: kubeadm reset -f --cri-socket unix:///run/containerd/containerd.sock",
		"etcdctl member remove", // a control plane: its member may still be in the cluster
		"deleting link flannel.1",
		"by hand: ip link delete flannel.1",
		"ksboot agent reset --yes",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	var rerr *host.RunError
	if !errors.As(err, &rerr) {
		t.Errorf("the error does not unwrap to the failed command: %v", err)
	}
	got := statuses(res)
	for name, want := range map[string]Status{"bootstrap unit": Done, "kubeadm reset": Failed, "kubelet": Done, "network": Failed,
		"kubernetes state": Done, "ksboot state": Done, "cloud-init": Done} {
		if got[name] != want {
			t.Errorf("step %s: %s, want %s", name, got[name], want)
		}
	}
	// The later steps did their work although kubeadm reset failed.
	for _, p := range []string{"/var/lib/etcd/member/snap/db", "/etc/kubernetes/admin.conf", systemd.NodeConfigPath, systemd.CompleteMarker} {
		if exists(root, p) {
			t.Errorf("%s is still there", p)
		}
	}
	out := console.String()
	if !strings.Contains(out, "ksboot: reset: network: failed: deleting link flannel.1: command \"ip link delete flannel.1\" failed") ||
		!strings.Contains(out, "ksboot: reset: 2 of 7 steps failed (kubeadm reset, network)") || strings.Contains(out, "reboot the machine") {
		t.Errorf("console:\n%s", out)
	}
}

// TestResetDryRun: with a DryRun runner nothing is run or removed; the console says what would be.
func TestResetDryRun(t *testing.T) {
	root := node(t)
	var console bytes.Buffer
	dry := &host.DryRun{Out: &console}
	res, err := Run(context.Background(), Options{Root: root, Exec: dry, Console: &console})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(slices.Clone(removed), kept...) {
		if !exists(root, p) {
			t.Errorf("the dry run removed %s", p)
		}
	}
	for name, st := range statuses(res) {
		if st != WouldDo {
			t.Errorf("step %s: %s, want %s", name, st, WouldDo)
		}
	}
	out := console.String()
	for _, want := range []string{
		"would run: systemctl stop ksboot-bootstrap.service\n",
		"would run: kubeadm reset -f --cri-socket unix:///run/containerd/containerd.sock\n",
		"would run: iptables -t mangle -F\n",
		"ksboot: reset: kubernetes state: would remove /etc/kubernetes\n",
		"ksboot: reset: ksboot state: would remove /var/lib/ksboot/status.json\n",
		"ksboot: reset: network: would remove /etc/cni/net.d/10-flannel.conflist\n",
		"ksboot: reset: dry run: nothing was changed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "would run: systemctl is-active") || strings.Contains(out, "reboot the machine") {
		t.Errorf("dry run:\n%s", out)
	}
}

// TestResetKeepsMountedVolumes: a file system still mounted below /var/lib/kubelet (a pod
// volume kubeadm reset could not unmount) keeps the whole directory; a mount point itself
// (etcd on its own disk) is emptied, not removed.
func TestResetKeepsMountedVolumes(t *testing.T) {
	root := node(t)
	write(t, root, "/var/lib/kubelet/pods/p1/volumes/kubernetes.io~nfs/data/important", "data\n")
	volume := root.Path("/var/lib/kubelet/pods/p1/volumes/kubernetes.io~nfs/data")
	mountinfo := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(mountinfo, []byte("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"+
		"40 22 0:50 / "+strings.ReplaceAll(volume, " ", `\040`)+" rw - nfs4 nas:/export rw\n"+
		"41 22 8:17 / "+root.Path(EtcdDir)+" rw - ext4 /dev/sdb1 rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stub := hosttest.NewStub(t)
	registerFirstRun(stub, root, errors.New("exit status 1"), nil)
	var console bytes.Buffer
	_, err := Run(context.Background(), Options{Root: root, Exec: stub, Console: &console, MountInfo: mountinfo})
	if err == nil || !strings.Contains(err.Error(), "kubernetes state: removing /var/lib/kubelet: 1 file system(s) still mounted below it") ||
		!strings.Contains(err.Error(), "by hand: umount "+volume) {
		t.Fatalf("got %v\n%s", err, console.String())
	}
	if !exists(root, "/var/lib/kubelet/pods/p1/volumes/kubernetes.io~nfs/data/important") || !exists(root, "/var/lib/kubelet/config.yaml") {
		t.Error("the reset removed files of a directory with a mounted volume below it")
	}
	if !exists(root, EtcdDir) || exists(root, "/var/lib/etcd/member") {
		t.Errorf("%s (a mount point) should be emptied, not removed", EtcdDir)
	}
	if !strings.Contains(console.String(), "ksboot: reset: kubernetes state: emptied /var/lib/etcd (a mount point)\n") {
		t.Errorf("console:\n%s", console.String())
	}
}

// TestResetBareMachine: on a machine ksboot never bootstrapped, kubeadm is said to be missing,
// and a filter table whose INPUT policy is DROP (ufw) is not flushed.
func TestResetBareMachine(t *testing.T) {
	root := host.Root(t.TempDir())
	write(t, root, "/usr/sbin/iptables", "x\n")
	stub := hosttest.NewStub(t)
	stub.Register(`^iptables -S$`, "-P INPUT DROP\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n-N ufw-before-input\n-A INPUT -j ufw-before-input\n", nil)
	stub.Register(`^iptables -t nat -S$`, "-P PREROUTING ACCEPT\n", nil)
	stub.Register(`^iptables -t mangle -S$`, "-P PREROUTING ACCEPT\n", nil)
	var console bytes.Buffer
	res, err := Run(context.Background(), Options{Root: root, Exec: stub, Console: &console, MountInfo: noMounts(t)})
	if err != nil {
		t.Fatal(err)
	}
	out := console.String()
	for _, want := range []string{
		"ksboot: reset: kubeadm reset: nothing to do (kubeadm not installed: skipped)\n",
		"ksboot: reset: network: warning: the iptables filter table is left alone: its INPUT policy is DROP",
		"ksboot: reset: cloud-init: nothing to do (cloud-init not installed: skipped)\n",
		"ksboot: reset: nothing was left to reset on this machine\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	if !res.NothingLeft() {
		t.Errorf("steps: %v", statuses(res))
	}
}

// TestResetEtcdMemberLeft: kubeadm reset only warns when it cannot remove a control plane's etcd
// member; the reset passes that on with what to do, and still succeeds.
func TestResetEtcdMemberLeft(t *testing.T) {
	root := host.Root(t.TempDir())
	write(t, root, install.BinDir+"/kubeadm", "x\n")
	write(t, root, kubeadm.ManifestsDir+"/etcd.yaml", "x\n")
	stub := hosttest.NewStub(t)
	stub.RegisterDo(`^kubeadm reset -f --cri-socket `, gone(root,
		"W1206 12:00:00.000000    1234 removeetcdmember.go:106] [reset] Failed to remove etcd member: context deadline exceeded, please manually remove this etcd member using etcdctl\n",
		kubeadm.ManifestsDir+"/etcd.yaml"))
	var console bytes.Buffer
	res, err := Run(context.Background(), Options{Root: root, Exec: stub, Console: &console, MountInfo: noMounts(t)})
	if err != nil {
		t.Fatal(err)
	}
	if st := statuses(res)["kubeadm reset"]; st != Done {
		t.Errorf("kubeadm reset: %s", st)
	}
	if want := "ksboot: reset: kubeadm reset: warning: kubeadm could not remove this control plane's etcd member (see its output above): " +
		"on another control plane, find this node in `etcdctl member list` and remove it with `etcdctl member remove <ID>`\n"; !strings.Contains(console.String(), want) {
		t.Errorf("console lacks %q:\n%s", want, console.String())
	}
	if exists(root, KubernetesDir) {
		t.Errorf("%s is still there", KubernetesDir)
	}
}

func TestResetNeedsRunner(t *testing.T) {
	if _, err := Run(context.Background(), Options{Root: host.Root(t.TempDir())}); err == nil {
		t.Error("Run without a command runner succeeded")
	}
}

// TestPathsAreOwned: what is removed whole holds only ksboot's and Kubernetes' files, and the
// install records that are kept sit in the state directory that is emptied.
func TestPathsAreOwned(t *testing.T) {
	if path.Dir(install.StateDir) != systemd.StateDir {
		t.Errorf("install records %s are not in %s: the reset would not keep them", install.StateDir, systemd.StateDir)
	}
	for _, p := range []string{systemd.NodeConfigPath, kubeadm.ConfigPath, kubeadm.PatchesDir} {
		if path.Dir(p) != ConfigDir {
			t.Errorf("%s is not in %s: the reset would leave it", p, ConfigDir)
		}
	}
	if path.Dir(runtime.KubeletUnitPath) != path.Dir(path.Dir(KubeletWantsLink)) {
		t.Errorf("the kubelet unit %s and its wants link %s are in different directories", runtime.KubeletUnitPath, KubeletWantsLink)
	}
	for _, p := range []string{"", "/", "/etc", "var/lib/kubelet", "/var/lib/../etc", "/var/lib/kubelet/"} {
		if checkPath(p) == nil {
			t.Errorf("checkPath(%q) accepted it", p)
		}
	}
	for _, p := range []string{KubernetesDir, KubeletDir, EtcdDir, CNIStateDir, ConfigDir, kubeadm.RootKubeconfig} {
		if err := checkPath(p); err != nil {
			t.Error(err)
		}
	}
}

func TestParseRules(t *testing.T) {
	for _, c := range []struct {
		out   string
		rules bool
		drop  string
	}{
		{"-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n", false, ""},
		{"-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n", false, ""},
		{"-P INPUT ACCEPT\n-N KUBE-FIREWALL\n", true, ""},
		{"-P INPUT DROP\n-P OUTPUT ACCEPT\n-A INPUT -i lo -j ACCEPT\n", true, "INPUT"},
		{"-P OUTPUT DROP\n", false, "OUTPUT"},
		{"", false, ""},
	} {
		rules, drop := parseRules(c.out)
		if rules != c.rules || drop != c.drop {
			t.Errorf("parseRules(%q) = %v, %q; want %v, %q", c.out, rules, drop, c.rules, c.drop)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/var/lib/kubelet`:       "/var/lib/kubelet",
		`/mnt/with\040space`:     "/mnt/with space",
		`/mnt/back\134slash`:     `/mnt/back\slash`,
		`/mnt/trailing\04`:       `/mnt/trailing\04`,
		`/mnt/not\999an-escape`:  `/mnt/not\999an-escape`,
		`/mnt/tab\011and\012new`: "/mnt/tab\tand\nnew",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
