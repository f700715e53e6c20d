package install

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/image"
	"github.com/ksboot/ksboot/test/ksbootbin"
	"github.com/ksboot/ksboot/test/vm"
)

const k8sVersion = "v1.37.2"

// guestOS is the bundle's package directory for the guest (Debian 12), as the install phase
// matches it against os-release.
const guestOS = "debian-12"

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
	dirs := buildArtifacts(t)
	img := vm.GuestImage(t, vm.ImageOptions{HaltOn: kubeadm.ConfigPath})
	t.Logf("guest image %s (built in %s; 0 = cached)", img.Key, img.BuildTime.Round(time.Second))

	bdir := bundleDir(t, img, dirs)
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
	for _, re := range []string{
		// install's steps, as the agent prints them on the console.
		`ksboot: install: packages: installed .*socat.* from bundle ` + regexp.QuoteMeta(artifacts.MountPoint),
		`ksboot: install: binaries: installed kubeadm ` + k8sVersion + `.* from bundle`,
		`ksboot: install: runtime: containerd configured .* and running`,
		// Verify ran every binary: kubeadm, kubelet, kubectl, containerd, runc, crictl.
		`ksboot: install: verify: kubeadm ` + k8sVersion + `, kubelet ` + k8sVersion + `, kubectl ` + k8sVersion +
			`, containerd v?2\.4\.2\S*, runc v?1\.5\.2\S*, crictl v1\.37\.0`,
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

// buildArtifacts runs hack/build-artifacts.sh (cached builds from the Go modules) and returns
// each component's binary directory.
func buildArtifacts(t *testing.T) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	script := filepath.Join(ksbootbin.RepoRoot(t), "hack", "build-artifacts.sh")
	cmd := exec.CommandContext(ctx, script)
	cmd.Env = append(os.Environ(), "K8S_VERSION="+k8sVersion,
		"CONTAINERD_VERSION="+artifacts.DefaultContainerdVersion, "RUNC_VERSION="+artifacts.DefaultRuncVersion,
		"CRICTL_VERSION="+artifacts.DefaultCrictlVersion, "CNI_PLUGINS_VERSION="+artifacts.DefaultCNIPluginsVersion)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	dirs := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if name, dir, ok := strings.Cut(sc.Text(), " "); ok {
			dirs[name] = dir
		}
	}
	for _, n := range []string{"kubernetes", "containerd", "runc", "cri-tools", "cni-plugins"} {
		if dirs[n] == "" {
			t.Fatalf("%s printed no directory for %s:\n%s", script, n, out)
		}
	}
	return dirs
}

// bundleDir lays out the bundle directory (without manifest: image.ReadBundleDir writes it
// from the paths) under ${XDG_CACHE_HOME:-~/.cache}/ksboot/bundle/<key>/, where the key covers
// the guest image (whose dpkg status decides the packages) and every input binary. It is built
// in a temporary directory renamed into place, so a cached directory is always complete.
func bundleDir(t *testing.T, img *vm.Image, dirs map[string]string) string {
	t.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(base, "ksboot", "bundle")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "v1 %s %s\n", img.Key, k8sVersion)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range dirs {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		entries, err := os.ReadDir(dirs[n])
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				fmt.Fprintf(h, "%s/%s %d %d\n", n, e.Name(), fi.Size(), fi.ModTime().UnixNano())
			}
		}
	}
	final := filepath.Join(cache, hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(final, "complete")); err == nil {
		return filepath.Join(final, "bundle")
	}
	start := time.Now()
	tmp, err := os.MkdirTemp(cache, ".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "bundle")
	put := func(a artifacts.Artifact, data []byte) {
		p, err := image.BundlePath(a)
		if err != nil {
			t.Fatal(err)
		}
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, a := range artifacts.Components(k8sVersion, "amd64") {
		switch a.Name {
		case artifacts.Kubeadm, artifacts.Kubelet, artifacts.Kubectl:
			put(a, read(filepath.Join(dirs["kubernetes"], a.Name)))
		case artifacts.Runc:
			put(a, read(filepath.Join(dirs["runc"], "runc")))
		case artifacts.Containerd:
			// The release tarball's layout: bin/<binary>.
			put(a, tarGz(t, dirs["containerd"], "bin/", "containerd", "containerd-shim-runc-v2", "ctr"))
		case artifacts.Crictl:
			put(a, tarGz(t, dirs["cri-tools"], "", "crictl"))
		case artifacts.CNIPlugins:
			entries, err := os.ReadDir(dirs["cni-plugins"])
			if err != nil {
				t.Fatal(err)
			}
			var plugins []string
			for _, e := range entries {
				plugins = append(plugins, e.Name())
			}
			put(a, tarGz(t, dirs["cni-plugins"], "./", plugins...))
		}
	}
	downloadPackages(t, img, filepath.Join(dir, image.PackagesDir, guestOS))
	if err := os.WriteFile(filepath.Join(tmp, "complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(final); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	t.Logf("bundle directory %s laid out in %s", final, time.Since(start).Round(time.Second))
	return filepath.Join(final, "bundle")
}

// tarGz packs files of dir into a gzipped tarball under prefix, as release tarballs are made.
func tarGz(t *testing.T, dir, prefix string, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: prefix + n, Mode: 0o755, Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// downloadPackages fetches, through the host's configured apt sources, the packages the install
// phase requires and every dependency the guest image lacks: apt resolves them against the
// guest's own dpkg status (read from its disk with debugfs), not the host's.
func downloadPackages(t *testing.T, img *vm.Image, dst string) {
	t.Helper()
	work := t.TempDir()
	status, err := exec.Command("debugfs", "-R", "cat /var/lib/dpkg/status", img.Root).Output()
	if err != nil || len(status) == 0 {
		t.Fatalf("reading the guest's dpkg status with debugfs: %v", err)
	}
	statusFile := filepath.Join(work, "status")
	if err := os.WriteFile(statusFile, status, 0o644); err != nil {
		t.Fatal(err)
	}
	archives := filepath.Join(work, "archives")
	for _, d := range []string{filepath.Join(archives, "partial"), filepath.Join(work, "cache"), dst} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := append([]string{"install", "--download-only", "-y", "--no-install-recommends",
		"-o", "Dir::State::Status=" + statusFile, "-o", "Dir::Cache=" + filepath.Join(work, "cache"),
		"-o", "Dir::Cache::Archives=" + archives, "-o", "Debug::NoLocking=1"}, install.RequiredPackages["debian"]...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get %s: %v\n%s\n(run apt-get update if the host has no package lists)", strings.Join(args, " "), err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(archives, "*.deb"))
	if len(debs) == 0 {
		t.Fatal("apt-get downloaded no packages; the guest image already has them all?")
	}
	for _, d := range debs {
		if err := os.Rename(d, filepath.Join(dst, filepath.Base(d))); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("downloaded %d Debian packages for the guest", len(debs))
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
