package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/image"
	"github.com/ksboot/ksboot/test/bundle"
	"github.com/ksboot/ksboot/test/ksbootbin"
	"github.com/ksboot/ksboot/test/vm"
	"github.com/ksboot/ksboot/versions"
)

// k8sVersion is the KubeSphere guide's release (KubeSphere v3.4 installs it), so this test
// proves the older line of the version matrix: containerd 1.7 with its version-2
// configuration and runc, crictl and kubelet of that row. CI's e2e scenario (single-node-1.26)
// uses the same release, so the two share every build. The newest row is proven by the e2e
// suite's scenarios at their cluster files' version.
const k8sVersion = "v1.26.5"

// clusterFile is one control plane that initialises the cluster, with static discovery (its
// own address; nothing to wait for), the bundle found by its label, and the checks a small TCG
// guest cannot pass turned into warnings.
const clusterFile = `apiVersion: ksboot.dev/v1alpha1
kind: Cluster
metadata: {name: installtest}
spec:
  hosts:
    - {name: inst1, address: 10.78.0.10/24, mac: "52:54:00:78:00:10"}
  roleGroups:
    etcd: [inst1]
    control-plane: [inst1]
  kubernetes: {version: ` + k8sVersion + `}
  network: {plugin: flannel}
  discovery: {mode: static}
  artifacts: {bundle: "label:` + artifacts.DefaultLabel + `"}
  preflight: {warnOnly: [cpu, memory, disk, nameserver, time]}
`

// TestInstallFromBundle boots a guest from a node seed and an offline bundle ISO and checks that
// preflight, os and install ran for real: every package and binary came from the bundle,
// containerd was (re)started by systemd, and the installed versions are the bundle's.
//
// The guest powers off when the kubeadm phase writes its configuration (kubeadm.ConfigPath):
// that file is written only after install (and the instant discover of a lone init node) are
// recorded done, and before kubeadm init starts doing anything lasting.
func TestInstallFromBundle(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the qemu install test (builds Kubernetes and containerd from modules, boots a guest for minutes)")
	}
	vm.Available(t)
	for _, tool := range []string{"apt-get", "go", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not on PATH", tool)
		}
	}
	bin, sum := ksbootbin.Build(t, "v0.0.0-installtest")
	img := vm.GuestImage(t, vm.ImageOptions{HaltOn: kubeadm.ConfigPath})
	t.Logf("guest image %s (built in %s; 0 = cached)", img.Key, img.BuildTime.Round(time.Second))

	bdir := bundle.Dir(t, img, bundle.Options{KubernetesVersion: k8sVersion})
	work := t.TempDir()
	m, files, err := image.ReadBundleDir(bdir, image.BundleSpec{KubernetesVersion: k8sVersion, Arches: []string{"amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(work, "bundle.iso")
	start := time.Now()
	if err := image.WriteBundleISO(iso, files, image.Options{}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(iso)
	t.Logf("bundle ISO: %d artifacts, %d MiB, packed in %s", len(m.Artifacts), st.Size()>>20, time.Since(start).Round(100*time.Millisecond))

	file := filepath.Join(work, "cluster.yaml")
	if err := os.WriteFile(file, []byte(clusterFile), 0o644); err != nil {
		t.Fatal(err)
	}
	seeds := filepath.Join(work, "seeds")
	if out, err := exec.Command(bin, "build-seed", "-f", file, "-o", seeds, "--node", "inst1", "--agent", bin).CombinedOutput(); err != nil {
		t.Fatalf("build-seed: %v\n%s", err, out)
	}

	g := vm.Start(t, img, vm.Options{Name: "install", MemMiB: 2048, CPUs: 2,
		Seed: filepath.Join(seeds, "inst1.iso"), ExtraDrives: []string{iso},
		NICs: []vm.NIC{{MAC: "52:54:00:78:00:10"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// The boot's milestones, for the timings reported below.
	var marks []string
	for _, mk := range []struct{ name, re string }{
		{"agent started", `ksboot: \[preflight\]`},
		{"install started", `ksboot: \[install\]`},
		{"install done", `ksboot: \[install\] done in`},
	} {
		if err := g.WaitSerial(ctx, regexp.MustCompile(mk.re)); err != nil {
			t.Fatalf("waiting for %s: %v", mk.name, err)
		}
		marks = append(marks, fmt.Sprintf("%s %s", mk.name, g.Runtime().Round(time.Second)))
	}
	if err := g.WaitPoweroff(ctx); err != nil {
		t.Fatalf("guest did not finish: %v", err)
	}
	t.Logf("power-on → %s; power-off %s; qemu peak RSS %d MiB", strings.Join(marks, ", "), g.Runtime().Round(time.Second), g.PeakRSS()>>20)
	checkGuest(t, g, m, sum)
}

func checkGuest(t *testing.T, g *vm.Guest, m *artifacts.Manifest, agentSum string) {
	serial := g.SerialLog()
	read := func(p string) []byte {
		b, err := g.ReadFile(p)
		if err != nil {
			t.Fatalf("reading %s from the guest disk: %v\n--- serial tail\n%s", p, err, tail(serial, 60))
		}
		return b
	}
	var st state.Status
	if err := json.Unmarshal(read("/"+state.StatusFile), &st); err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]string{}
	for _, p := range st.Phases {
		outcomes[p.Name] = p.Outcome
		t.Logf("phase %-10s %-8s %s %s", p.Name, p.Outcome, p.Duration, p.Error)
	}
	for _, p := range []string{"preflight", "os", "install"} {
		if outcomes[p] != "done" {
			t.Errorf("phase %s: outcome %q, want done (status.json error: %s)", p, outcomes[p], st.Error)
		}
	}
	// The agent in the guest is the one built here.
	if got := sha256.Sum256(read("/usr/local/bin/ksboot")); hex.EncodeToString(got[:]) != agentSum {
		t.Error("/usr/local/bin/ksboot is not the agent the seed carried")
	}
	// Every binary was installed from the bundle, with the bundle's digest.
	for _, a := range artifacts.Components(k8sVersion, "amd64") {
		var rec struct {
			Name, Version, SHA256 string
		}
		if err := json.Unmarshal(read(install.StateDir+"/"+a.Name+".json"), &rec); err != nil {
			t.Fatalf("install record of %s: %v", a.Name, err)
		}
		e, ok := m.Find(a)
		if !ok || rec.SHA256 != e.SHA256 || rec.Version != a.Version {
			t.Errorf("%s: installed %s sha256 %s; the bundle has %s", a.Name, rec.Version, rec.SHA256, e.SHA256)
		}
	}
	// Packages came from the bundle: dpkg knows them as installed.
	status := string(read("/var/lib/dpkg/status"))
	for _, p := range install.RequiredPackages["debian"] {
		// Essential packages (tar) carry an "Essential: yes" line between the two.
		if !regexp.MustCompile(`(?m)^Package: ` + regexp.QuoteMeta(p) + `\n(?:[^\n]+\n)*?Status: install ok installed$`).MatchString(status) {
			t.Errorf("package %s is not installed in the guest", p)
		}
	}
	row := versions.MustLookup(k8sVersion)
	bare := func(v string) string { return regexp.QuoteMeta(strings.TrimPrefix(v, "v")) }
	for _, re := range []string{
		// install's steps, as the agent prints them on the console.
		`ksboot: install: packages: installed .*socat.* from bundle ` + regexp.QuoteMeta(artifacts.MountPoint),
		`ksboot: install: binaries: installed kubeadm ` + k8sVersion + `.* from bundle`,
		`ksboot: install: runtime: containerd configured .* and running`,
		// Verify ran every binary: kubeadm, kubelet, kubectl, containerd, runc, crictl.
		`ksboot: install: verify: kubeadm ` + k8sVersion + `, kubelet ` + k8sVersion + `, kubectl ` + k8sVersion +
			`, containerd v?` + bare(row.Containerd) + `\S*, runc v?` + bare(row.Runc) + `\S*, crictl ` + regexp.QuoteMeta(row.Crictl),
		// systemd started containerd (Type=notify: "Started" means it answered on its socket).
		`Started containerd\.service`,
		// and it answers over CRI, as kubelet will ask it (crictl info: RuntimeReady).
		`ksboot: install: verify: containerd answers over CRI \(crictl info: RuntimeReady\)`,
	} {
		if !regexp.MustCompile(re).MatchString(serial) {
			t.Errorf("serial log lacks %s\n--- serial tail\n%s", re, tail(serial, 80))
		}
	}
	if regexp.MustCompile(`containerd\.service: (Main process exited|Failed)`).MatchString(serial) {
		t.Errorf("containerd failed in the guest\n--- serial tail\n%s", tail(serial, 80))
	}
	if !regexp.MustCompile(`(?m)^runtime-endpoint: unix:///run/containerd/containerd\.sock`).Match(read("/etc/crictl.yaml")) {
		t.Error("/etc/crictl.yaml does not point crictl at containerd")
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
