package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap"
	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
)

// agentHelperEnv carries, JSON-encoded, the arguments TestAgentHelperProcess runs the CLI with.
const agentHelperEnv = "KSBOOT_TEST_AGENT_ARGS"

// TestAgentHelperProcess is not a test: TestAgentDryRunNoNetwork re-executes the test binary
// with this test selected to run the real CLI as a whole process inside a network namespace.
// A goroutine locked to a thread in the namespace would not do: goroutines the agent starts
// (HTTP transports dial on their own) run on other threads, in the host's namespace.
func TestAgentHelperProcess(t *testing.T) {
	raw := os.Getenv(agentHelperEnv)
	if raw == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintf(os.Stderr, "helper: decoding %s: %v\n", agentHelperEnv, err)
		os.Exit(99)
	}
	os.Exit(run(args, strings.NewReader(""), os.Stdout, os.Stderr))
}

var dryNetnsSeq atomic.Int32

// TestAgentDryRunNoNetwork runs `ksboot agent run --dry-run` for the init node of the default
// cluster file (`ksboot create config`: Calico, mDNS discovery) in a network namespace of its
// own that has only a loopback device and no route, and checks that the dry run succeeds
// without opening a single Internet socket: Calico's manifest is named with its URL and pinned
// digest instead of downloaded, discovery says how it would look instead of browsing mDNS, and
// the manifests ksboot generates are written. With strace installed every socket(2),
// connect(2), sendto(2), sendmsg(2) and bind(2) of the process is recorded and any of the
// AF_INET or AF_INET6 family fails the test; without it the test relies on the run succeeding
// in a namespace where every dial fails.
func TestAgentDryRunNoNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("network-namespace test: skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("network-namespace test: needs root to create a network namespace (run go test as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network-namespace test: the ip command (iproute2) is not installed")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "cluster.yaml")
	if code, out, errOut := ksboot(t, "create", "config", "-f", file); code != 0 {
		t.Fatalf("create config: exit %d\n%s%s", code, out, errOut)
	}
	c, _, err := cluster.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Network.Plugin != "calico" {
		t.Fatalf("the default cluster file's network plugin is %q; this test is about Calico's fetched manifest", c.Spec.Network.Plugin)
	}
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := cluster.NodeConfigFor(c, s, c.InitNode())
	if err != nil {
		t.Fatal(err)
	}
	data, err := nc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := state.WriteFileAtomic(filepath.Join(root, "etc/ksboot/node.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := state.WriteFileAtomic(filepath.Join(root, "etc/os-release"), []byte("ID=debian\nVERSION_ID=\"12\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	sweepDryRunNamespaces(t)
	ns := fmt.Sprintf("ksbdry-%d-%d", os.Getpid(), dryNetnsSeq.Add(1))
	ip(t, "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("deleting namespace %s: %v: %s", ns, err, out)
		}
	})
	ip(t, "-n", ns, "link", "set", "lo", "up")
	for _, family := range []string{"-4", "-6"} {
		// Only loopback's own routes may exist (IPv6 puts ::1 in the main table).
		out := ip(t, "-n", ns, family, "route", "show")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line != "" && !strings.HasSuffix(strings.Fields(line)[0], "::1") {
				t.Fatalf("namespace %s has a route: %s", ns, line)
			}
		}
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args, _ := json.Marshal([]string{"agent", "run", "--dry-run", "--root", root, "--config", "/etc/ksboot/node.yaml"})
	cmdline := []string{"netns", "exec", ns}
	trace := filepath.Join(dir, "strace.txt")
	strace, err := exec.LookPath("strace")
	if err == nil {
		cmdline = append(cmdline, strace, "-f", "-qq", "-e", "trace=socket,connect,sendto,sendmsg,bind", "-o", trace)
	} else {
		t.Log("strace is not installed: not recording the run's socket calls; judging by the run's outcome alone")
		strace = ""
	}
	cmdline = append(cmdline, exe, "-test.run=^TestAgentHelperProcess$", "-test.timeout=5m")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", cmdline...)
	cmd.Env = append(os.Environ(), agentHelperEnv+"="+string(args))
	outBytes, err := cmd.CombinedOutput()
	out := string(outBytes)
	if err != nil {
		t.Fatalf("agent run --dry-run in namespace %s: %v\n%s", ns, err, out)
	}

	if strace != "" {
		data, err := os.ReadFile(trace)
		if err != nil {
			t.Fatalf("reading strace's record: %v", err)
		}
		var inet []string
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "AF_INET") {
				inet = append(inet, line)
			}
		}
		if len(inet) > 0 {
			t.Errorf("the dry run used Internet sockets:\n%s\n--- output:\n%s", strings.Join(inet, "\n"), out)
		}
	}
	for _, bad := range []string{"dial ", "lookup ", "network is unreachable", "connection refused", "certificate verified"} {
		if strings.Contains(out, bad) {
			t.Errorf("the dry run's output says %q:\n%s", bad, out)
		}
	}
	a := addons.CalicoManifest
	calico := regexp.MustCompile(`(?m)^would fetch and apply: cni ` + regexp.QuoteMeta(a.Name) + ` from ` + regexp.QuoteMeta(a.URL) +
		`, sha256 ` + a.SHA256 + ` `)
	if !calico.MatchString(out) {
		t.Errorf("no line naming where Calico's manifest would come from (%s) and its digest:\n%s", calico, out)
	}
	if !strings.Contains(out, "would discover: the control plane by mDNS") {
		t.Errorf("the discover phase does not say how it would look:\n%s", out)
	}
	manifests := filepath.Join(root, bootstrap.ManifestsDir)
	if _, err := os.Stat(filepath.Join(manifests, addons.StorageFile)); err != nil {
		t.Errorf("the generated storage manifest was not written: %v", err)
	}
	if _, err := os.Stat(filepath.Join(manifests, addons.CNIFile)); err == nil {
		t.Errorf("%s was written although Calico's manifest was not fetched", addons.CNIFile)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ksboot/kubeadm.yaml")); err != nil {
		t.Errorf("the kubeadm config was not written: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, workflow.CompleteMarker)); err != nil {
		t.Errorf("no completion marker under the root: %v", err)
	}
}

// sweepDryRunNamespaces deletes namespaces this test left behind in processes that were killed
// before their cleanup ran (go test -timeout skips t.Cleanup); the pid in the name tells.
func sweepDryRunNamespaces(t *testing.T) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^ksbdry-(\d+)-\d+$`)
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if out, err := exec.Command("ip", "netns", "delete", e.Name()).CombinedOutput(); err != nil {
			t.Logf("removing stale namespace %s: %v: %s", e.Name(), err, out)
		}
	}
}

// ip runs ip(8) and returns its output, failing the test when it fails.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
