package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/image"
	"github.com/ksboot/ksboot/test/ksbootbin"
	"github.com/ksboot/ksboot/test/vm"
	"github.com/ksboot/ksboot/versions"
)

// GuestOS is the bundle's package directory for the test guests (Debian 12), as the install
// phase matches it against os-release.
const GuestOS = "debian-12"

// Options say what the bundle holds besides the binaries and the guest's packages.
type Options struct {
	// KubernetesVersion of the binaries (and images); required.
	KubernetesVersion string
	// Images adds the image archives of hack/build-images.sh: kubeadm's control-plane images
	// and Flannel's, under images/<name>-amd64.tar.
	Images bool
	// LoadBalancer, with Images, adds the internal load balancer's image archive
	// (images/kube-vip-amd64.tar): "kube-vip", the only one that builds from a Go module, or "".
	LoadBalancer string
	// UpgradeTo, when set, adds a second release that a rolling upgrade moves to: its
	// components that differ from KubernetesVersion's (kubeadm, kubelet and kubectl under
	// releases/<UpgradeTo>/, others at their own paths) and, with Images, its kubeadm images
	// under images/<UpgradeTo>/. The directory then has a manifest.json listing both.
	UpgradeTo string
}

// Dir returns a bundle directory without manifest.json (`ksboot bundle --from-dir` and
// image.ReadBundleDir make it from the paths; with Options.UpgradeTo it has one) under
// ${XDG_CACHE_HOME:-~/.cache}/ksboot/bundle/<key>/bundle, where the key covers the guest image
// (whose dpkg status decides the packages) and every input file. It is built in a temporary
// directory renamed into place, so a cached directory is always complete.
func Dir(t testing.TB, img *vm.Image, opts Options) string {
	t.Helper()
	components := []string{"kubernetes", "containerd", "runc", "cri-tools", "cni-plugins"}
	dirs := run(t, "build-artifacts.sh", opts.KubernetesVersion, nil, components...)
	var upDirs, upArchives map[string]string
	if opts.UpgradeTo != "" {
		if versions.MustLookup(opts.UpgradeTo).Flannel != versions.MustLookup(opts.KubernetesVersion).Flannel {
			t.Fatalf("bundle options: %s and %s use different Flannel releases; a bundle of both holds one", opts.KubernetesVersion, opts.UpgradeTo)
		}
		upDirs = run(t, "build-artifacts.sh", opts.UpgradeTo, nil, components...)
		if opts.Images {
			upArchives = run(t, "build-images.sh", opts.UpgradeTo, nil, "kubernetes-images", "kubernetes-control-plane-images")
			delete(upArchives, "flannel-images")
		}
	}
	var archives map[string]string
	if opts.Images {
		want := []string{"kubernetes-images", "kubernetes-control-plane-images", "flannel-images"}
		var env []string
		if opts.LoadBalancer != "" {
			want = append(want, opts.LoadBalancer+"-images")
			env = append(env, "LOADBALANCER_IMAGES="+opts.LoadBalancer, "KUBE_VIP_IMAGE="+versions.KubeVIPImage)
		}
		archives = run(t, "build-images.sh", opts.KubernetesVersion, env, want...)
	} else if opts.LoadBalancer != "" {
		t.Fatalf("bundle options: a load balancer image (%s) needs Images", opts.LoadBalancer)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(base, "ksboot", "bundle")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "v1 %s %s\n", img.Key, opts.KubernetesVersion)
	if opts.UpgradeTo != "" {
		fmt.Fprintf(h, "upgrade to %s\n", opts.UpgradeTo)
	}
	hashInputs(t, h, "", dirs, archives)
	hashInputs(t, h, opts.UpgradeTo, upDirs, upArchives)
	final := filepath.Join(cache, hex.EncodeToString(h.Sum(nil))[:16])
	defer prune(t, cache, final)
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
	put := func(p string, data []byte) {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	putArtifact := func(a artifacts.Artifact, data []byte) {
		p, err := image.BundlePath(a)
		if err != nil {
			t.Fatal(err)
		}
		put(p, data)
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, a := range artifacts.Components(opts.KubernetesVersion, "amd64") {
		switch a.Name {
		case artifacts.Kubeadm, artifacts.Kubelet, artifacts.Kubectl:
			putArtifact(a, read(filepath.Join(dirs["kubernetes"], a.Name)))
		case artifacts.Runc:
			putArtifact(a, read(filepath.Join(dirs["runc"], "runc")))
		case artifacts.Containerd:
			// The release tarball's layout: bin/<binary>.
			putArtifact(a, tarGz(t, dirs["containerd"], "bin/", "containerd", "containerd-shim-runc-v2", "ctr"))
		case artifacts.Crictl:
			putArtifact(a, tarGz(t, dirs["cri-tools"], "", "crictl"))
		case artifacts.CNIPlugins:
			entries, err := os.ReadDir(dirs["cni-plugins"])
			if err != nil {
				t.Fatal(err)
			}
			var plugins []string
			for _, e := range entries {
				plugins = append(plugins, e.Name())
			}
			putArtifact(a, tarGz(t, dirs["cni-plugins"], "./", plugins...))
		}
	}
	for _, n := range slices.Sorted(mapKeys(archives)) {
		// "kubernetes-images" → images/kubernetes-amd64.tar. A hard link: the archives are
		// hundreds of MiB and never modified.
		dst := filepath.Join(dir, "images", strings.TrimSuffix(n, "-images")+"-amd64.tar")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(archives[n], dst); err != nil {
			put(filepath.ToSlash(must(filepath.Rel(dir, dst))), read(archives[n]))
		}
	}
	downloadPackages(t, img, filepath.Join(dir, image.PackagesDir, GuestOS))
	if opts.UpgradeTo != "" {
		addRelease(t, dir, opts, upDirs, upArchives)
	}
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

// hashInputs writes the name, size and time of every file of dirs and archives into h: a
// rebuilt input changes the bundle's cache key. release tells a second release's inputs apart.
func hashInputs(t testing.TB, h io.Writer, release string, dirs, archives map[string]string) {
	t.Helper()
	for _, n := range slices.Sorted(mapKeys(dirs)) {
		entries, err := os.ReadDir(dirs[n])
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				fmt.Fprintf(h, "%s%s/%s %d %d\n", release, n, e.Name(), fi.Size(), fi.ModTime().UnixNano())
			}
		}
	}
	for _, n := range slices.Sorted(mapKeys(archives)) {
		fi, err := os.Stat(archives[n])
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%simage %s %d %d\n", release, n, fi.Size(), fi.ModTime().UnixNano())
	}
}

// addRelease adds opts.UpgradeTo's components and image archives to the laid-out bundle
// directory dir of opts.KubernetesVersion, and writes the manifest.json of both: the manifest
// `ksboot bundle` makes of dir (every file checked), plus an entry for each added file.
// Components both releases share (containerd, runc, the CNI plugins of one version) are not
// added twice; a component whose usual path holds the first release's file (kubeadm, kubelet,
// kubectl) goes under releases/<UpgradeTo>/.
func addRelease(t testing.TB, dir string, opts Options, upDirs, upArchives map[string]string) {
	t.Helper()
	m, _, err := image.ReadBundleDir(dir, image.BundleSpec{KubernetesVersion: opts.KubernetesVersion, Arches: []string{"amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	have := func(name, version string) bool {
		return slices.ContainsFunc(m.Artifacts, func(e artifacts.Entry) bool {
			return e.Name == name && e.Version == version && e.Arch == "amd64"
		})
	}
	add := func(e artifacts.Entry, src string) {
		dst := filepath.Join(dir, filepath.FromSlash(e.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(src, dst); err != nil {
			if err := os.WriteFile(dst, must(os.ReadFile(src)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		e.SHA256 = must(artifacts.FileSHA256(dst))
		m.Artifacts = append(m.Artifacts, e)
	}
	staged := t.TempDir()
	for _, a := range artifacts.Components(opts.UpgradeTo, "amd64") {
		if have(a.Name, a.Version) {
			continue
		}
		p := must(image.BundlePath(a))
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p))); err == nil {
			p = path.Join("releases", opts.UpgradeTo, p)
		}
		src := filepath.Join(staged, a.Name)
		switch a.Name {
		case artifacts.Kubeadm, artifacts.Kubelet, artifacts.Kubectl:
			src = filepath.Join(upDirs["kubernetes"], a.Name)
		case artifacts.Runc:
			src = filepath.Join(upDirs["runc"], "runc")
		case artifacts.Containerd:
			writeFile(t, src, tarGz(t, upDirs["containerd"], "bin/", "containerd", "containerd-shim-runc-v2", "ctr"))
		case artifacts.Crictl:
			writeFile(t, src, tarGz(t, upDirs["cri-tools"], "", "crictl"))
		default:
			t.Fatalf("bundle: %s %s differs between %s and %s; addRelease does not lay it out", a.Name, a.Version, opts.KubernetesVersion, opts.UpgradeTo)
		}
		add(artifacts.Entry{Name: a.Name, Version: a.Version, Arch: a.Arch, Kind: a.Kind, Path: p}, src)
	}
	for _, n := range slices.Sorted(mapKeys(upArchives)) {
		name := strings.TrimSuffix(n, "-images")
		refs, err := image.ImageArchiveRefs(upArchives[n])
		if err != nil {
			t.Fatal(err)
		}
		add(artifacts.Entry{Name: name, Version: opts.UpgradeTo, Arch: "amd64", Kind: artifacts.KindImage,
			Path: path.Join(image.ImagesDir, opts.UpgradeTo, name+"-amd64.tar"), Images: refs}, upArchives[n])
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, artifacts.ManifestFile), data)
}

func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Bundle directories are about 1 GB each, one per Kubernetes release and load-balancer
// variant and per change of their inputs. prune keeps the keepBundles most recently used
// (the "complete" marker's time, set at each use) and any used within keepUsed, and removes
// the rest, and half-built directories of killed runs older than keepUsed.
const (
	keepBundles = 6
	keepUsed    = 24 * time.Hour
)

func prune(t testing.TB, cache, used string) {
	now := time.Now()
	_ = os.Chtimes(filepath.Join(used, "complete"), now, now)
	entries, err := os.ReadDir(cache)
	if err != nil {
		return
	}
	type dir struct {
		path string
		used time.Time
	}
	var dirs []dir
	for _, e := range entries {
		path := filepath.Join(cache, e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") {
			if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > keepUsed {
				_ = os.RemoveAll(path)
			}
			continue
		}
		if fi, err := os.Stat(filepath.Join(path, "complete")); err == nil {
			dirs = append(dirs, dir{path, fi.ModTime()})
		}
	}
	slices.SortFunc(dirs, func(a, b dir) int { return b.used.Compare(a.used) })
	for i, d := range dirs {
		if i >= keepBundles && now.Sub(d.used) > keepUsed {
			if err := os.RemoveAll(d.path); err == nil {
				t.Logf("bundle: pruned %s (last used %s)", d.path, d.used.Format(time.RFC3339))
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// run runs a hack/ build script (cached builds from the Go modules) with the versions the
// version matrix names for the Kubernetes release (and extraEnv), and returns what it printed: one "NAME PATH" line per result. Every name
// in want must be there.
func run(t testing.TB, script, k8sVersion string, extraEnv []string, want ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	path := filepath.Join(ksbootbin.RepoRoot(t), "hack", script)
	cmd := exec.CommandContext(ctx, path)
	cmd.Dir = ksbootbin.RepoRoot(t)
	m := versions.MustLookup(k8sVersion)
	cmd.Env = append(os.Environ(), "K8S_VERSION="+k8sVersion,
		"CONTAINERD_VERSION="+m.Containerd, "RUNC_VERSION="+m.Runc,
		"CRICTL_VERSION="+m.Crictl, "CNI_PLUGINS_VERSION="+m.CNIPlugins,
		"FLANNEL_VERSION="+m.Flannel)
	cmd.Env = append(cmd.Env, extraEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", path, err, stderr.String())
	}
	if d := time.Since(start); d > time.Minute {
		t.Logf("%s built in %s", script, d.Round(time.Second))
	}
	// A component built at another version than the one asked for (the script's FALLING
	// BACK warnings) is said in the test's own output, not only in a failed run's.
	for line := range strings.Lines(stderr.String()) {
		if strings.Contains(line, "WARNING") {
			t.Log(strings.TrimSpace(line))
		}
	}
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if name, p, ok := strings.Cut(sc.Text(), " "); ok {
			got[name] = p
		}
	}
	for _, n := range want {
		if got[n] == "" {
			t.Fatalf("%s printed no path for %s:\n%s", path, n, out)
		}
	}
	return got
}

// tarGz packs files of dir into a gzipped tarball under prefix, as release tarballs are made.
func tarGz(t testing.TB, dir, prefix string, names ...string) []byte {
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
func downloadPackages(t testing.TB, img *vm.Image, dst string) {
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
