package image

import (
	"bytes"
	"context"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"

	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/artifactstest"
)

// bundleLayout writes a bundle directory without manifest: the fake release at BundlePath and
// two Debian packages, one with an epoch (%3a) and a "~" in its version.
func bundleLayout(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, f := range artifactstest.Release(t, "v1.37.2", "amd64") {
		p, err := BundlePath(f.Artifact)
		if err != nil {
			t.Fatal(err)
		}
		files[p] = f.Data
	}
	files["packages/debian-12/conntrack_1%3a1.4.7-1+b2_amd64.deb"] = []byte("conntrack deb")
	files["packages/debian-12/netbase_6.4~1_all.deb"] = []byte("netbase deb")
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestBundleISORoundTrip(t *testing.T) {
	src := t.TempDir()
	want := bundleLayout(t, src)
	m, files, err := ReadBundleDir(src, BundleSpec{KubernetesVersion: "v1.37.2", Arches: []string{"amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Artifacts) != 9 {
		t.Fatalf("manifest has %d entries, want 7 components and 2 packages: %+v", len(m.Artifacts), m.Artifacts)
	}
	if e, ok := m.Find(artifacts.Artifact{Name: "conntrack", Version: "1:1.4.7-1+b2", Arch: "amd64", Kind: artifacts.KindDeb}); !ok || e.OS != "debian-12" {
		t.Errorf("conntrack entry: %+v, %v", e, ok)
	}
	out := filepath.Join(t.TempDir(), "bundle.iso")
	if err := WriteBundleISO(out, files, Options{ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	checkMode(t, out, 0o644)
	if got := dirNames(t, filepath.Dir(out)); !slices.Equal(got, []string{"bundle.iso"}) {
		t.Errorf("output directory holds %q, want only bundle.iso", got)
	}

	// go-diskfs reads every file back under its full name (Rock Ridge), in its directory.
	d, err := diskfs.Open(out, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fsys, err := d.GetFilesystem(0)
	if err != nil {
		t.Fatal(err)
	}
	if fsys.Type() != filesystem.TypeISO9660 || strings.TrimSpace(fsys.Label()) != artifacts.DefaultLabel {
		t.Errorf("file system %v labelled %q, want ISO9660 %s", fsys.Type(), fsys.Label(), artifacts.DefaultLabel)
	}
	for p, data := range want {
		got, err := fsys.ReadFile(p)
		if err != nil {
			t.Errorf("go-diskfs ReadFile(%s): %v", p, err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: read back %d bytes that differ from the %d written", p, len(got), len(data))
		}
	}
	if st, err := fsys.Stat("bin/linux/amd64/kubeadm"); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("kubeadm in the medium: %v, %v; want mode 0644", st, err)
	}

	// blkid (what the agent's Locator asks) sees the label.
	if kv := blkidExport(t, out); kv["LABEL"] != artifacts.DefaultLabel || kv["TYPE"] != "iso9660" {
		t.Errorf("blkid: %v", kv)
	}
	// xorriso, an independent reader, extracts a tree that the agent's own bundle code accepts
	// with every sha256 matching.
	xorriso := tool(t, "xorriso", "xorriso")
	ext := filepath.Join(t.TempDir(), "x")
	run(t, xorriso, "-osirrox", "on", "-indev", out, "-extract", "/", ext)
	b, err := artifacts.OpenBundle(ext, "/run/ksboot/bundle")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range b.Manifest.Artifacts {
		if _, err := b.LocalPath(e); err != nil {
			t.Error(err)
		}
	}
	blob, err := b.Open(context.Background(), artifacts.Artifact{Name: "kubeadm", Version: "v1.37.2", Arch: "amd64", Kind: artifacts.KindBinary})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(blob.Body)
	blob.Body.Close()
	if !bytes.Equal(got, want["bin/linux/amd64/kubeadm"]) || blob.Location != "/run/ksboot/bundle/bin/linux/amd64/kubeadm" {
		t.Errorf("kubeadm from the extracted bundle: %q at %s", got, blob.Location)
	}

	// Same files, same time: same bytes, also when the clock has moved on (directories staged a
	// second later once gave Joliet records of another second).
	time.Sleep(1100 * time.Millisecond)
	again := filepath.Join(t.TempDir(), "bundle.iso")
	if err := WriteBundleISO(again, files, Options{ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	c, _ := os.ReadFile(again)
	if !bytes.Equal(a, c) {
		t.Error("two bundles from the same files and time differ")
	}
}

func TestReadBundleDirRefuses(t *testing.T) {
	spec := BundleSpec{KubernetesVersion: "v1.37.2", Arches: []string{"amd64"}}
	tests := []struct {
		name   string
		change func(t *testing.T, dir string)
		noSpec bool // pass an empty BundleSpec
		want   string
	}{
		{
			name:   "file not in the manifest",
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "notes.txt"), "hello") },
			want:   "notes.txt is not in the manifest",
		},
		{
			name:   "missing component without manifest",
			change: func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "bin/linux/amd64/kubelet")) },
			want:   "kubelet v1.37.2 (linux/amd64) should be at bin/linux/amd64/kubelet",
		},
		{
			name:   "no manifest and no version",
			change: func(*testing.T, string) {},
			noSpec: true,
			want:   "has no manifest.json",
		},
		{
			name: "manifest lists a missing file",
			change: func(t *testing.T, dir string) {
				writeManifest(t, dir, spec)
				remove(t, filepath.Join(dir, "runc/v1.5.2/runc.amd64"))
			},
			want: "runc/v1.5.2/runc.amd64 (binary runc v1.5.2 (amd64)) is missing",
		},
		{
			name: "checksum mismatch",
			change: func(t *testing.T, dir string) {
				writeManifest(t, dir, spec)
				write(t, filepath.Join(dir, "bin/linux/amd64/kubectl"), "tampered")
			},
			want: "bin/linux/amd64/kubectl (binary kubectl v1.37.2 (amd64)): sha256 is",
		},
		{
			name: "extra file next to a manifest",
			change: func(t *testing.T, dir string) {
				writeManifest(t, dir, spec)
				write(t, filepath.Join(dir, "packages/debian-12/extra_1.0_amd64.deb"), "x")
			},
			want: "packages/debian-12/extra_1.0_amd64.deb is not in the manifest",
		},
		{
			name: "tar that is not an image archive",
			change: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "images/kubernetes-amd64.tar"), "")
				writeTar(t, filepath.Join(dir, "images/kubernetes-amd64.tar"), [2]string{"etc/hostname", "x"})
			},
			want: "images/kubernetes-amd64.tar: reading image archive",
		},
		{
			name:   "image archive without an architecture",
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "images/kubernetes.tar"), "x") },
			want:   "images/kubernetes.tar: name image archives images/<name>-<arch>.tar",
		},
		{
			name:   "image archive for an architecture bundles do not carry",
			change: func(t *testing.T, dir string) { writeTestArchive(t, filepath.Join(dir, "images/kubernetes-s390x.tar")) },
			want:   `arch "s390x" is not amd64 or arm64`,
		},
		{
			name:   "package file name apt would not write",
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "packages/debian-12/socat.deb"), "x") },
			want:   "packages/debian-12/socat.deb is not in the manifest",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bundleLayout(t, dir)
			tc.change(t, dir)
			s := spec
			if tc.noSpec {
				s = BundleSpec{}
			}
			_, _, err := ReadBundleDir(dir, s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// writeTestArchive writes an image archive of testImages.
func writeTestArchive(t *testing.T, p string) {
	t.Helper()
	_, images := testImages(t)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteImageArchive(p, images, Options{ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
}

func TestReadBundleDirImages(t *testing.T) {
	dir := t.TempDir()
	bundleLayout(t, dir)
	_, images := testImages(t)
	proxy, flannel := images[0], images[1]
	pause := RefImage{Ref: "registry.k8s.io/pause:3.10.2", Image: flannel.Image}
	cni := RefImage{Ref: "ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1", Image: flannel.Image}
	if err := os.MkdirAll(filepath.Join(dir, ImagesDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for file, imgs := range map[string][]RefImage{
		"kubernetes-amd64.tar": {proxy, pause},
		"flannel-amd64.tar":    {cni, flannel},
		"pause-arm64.tar":      {pause},
	} {
		if err := WriteImageArchive(filepath.Join(dir, ImagesDir, file), imgs, Options{ModTime: testTime}); err != nil {
			t.Fatal(err)
		}
	}
	m, files, err := ReadBundleDir(dir, BundleSpec{KubernetesVersion: "v1.37.2", Arches: []string{"amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []artifacts.Entry
	for _, e := range m.Artifacts {
		if e.Kind == artifacts.KindImage {
			e.SHA256 = ""
			got = append(got, e)
		}
	}
	want := []artifacts.Entry{
		// Named like the archive: flannel's tag, not the CNI plugin's (first when sorted).
		{Name: "flannel", Version: "v0.27.4", Arch: "amd64", Kind: artifacts.KindImage, Path: "images/flannel-amd64.tar",
			Images: []string{"ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1", "ghcr.io/flannel-io/flannel:v0.27.4"}},
		// The bundle's Kubernetes version, which kube-proxy carries.
		{Name: "kubernetes", Version: "v1.37.2", Arch: "amd64", Kind: artifacts.KindImage, Path: "images/kubernetes-amd64.tar",
			Images: []string{"registry.k8s.io/kube-proxy:v1.37.2", "registry.k8s.io/pause:3.10.2"}},
		{Name: "pause", Version: "3.10.2", Arch: "arm64", Kind: artifacts.KindImage, Path: "images/pause-arm64.tar",
			Images: []string{"registry.k8s.io/pause:3.10.2"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("image entries\n%+v\nwant\n%+v", got, want)
	}
	var packed []string
	for _, f := range files {
		if strings.HasPrefix(f.Path, ImagesDir+"/") {
			packed = append(packed, f.Path)
		}
	}
	if len(packed) != 3 {
		t.Errorf("files to pack: %v, want the three archives", packed)
	}
	// The first tag when no image is named like the archive and none carries the Kubernetes
	// version.
	if v, err := imagesVersion("misc", []string{"quay.io/a/b:2", "quay.io/a/c:1"}, "v1.37.2"); err != nil || v != "2" {
		t.Errorf("imagesVersion = %q, %v; want 2", v, err)
	}
}

func TestReadBundleDirWithManifest(t *testing.T) {
	dir := t.TempDir()
	m := artifactstest.WriteBundle(t, dir, "v1.37.2", artifactstest.Release(t, "v1.37.2", "arm64"),
		artifactstest.Extra{Entry: artifacts.Entry{Name: "kubernetes-images", Version: "v1.37.2", Arch: "arm64", Kind: artifacts.KindImage,
			Images: []string{"registry.k8s.io/pause:3.10.2"}}, Data: []byte("oci archive")})
	got, files, err := ReadBundleDir(dir, BundleSpec{}) // the manifest decides, not the spec
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Artifacts) != len(m.Artifacts) || len(files) != len(m.Artifacts)+1 {
		t.Fatalf("%d entries and %d files, want %d and %d", len(got.Artifacts), len(files), len(m.Artifacts), len(m.Artifacts)+1)
	}
	if files[len(files)-1].Path != artifacts.ManifestFile || files[len(files)-1].Data == nil {
		t.Errorf("last file %+v, want the manifest from memory", files[len(files)-1])
	}
}

func TestBundlePathAndPackageEntry(t *testing.T) {
	paths := map[string]string{}
	for _, a := range artifacts.Components("v1.37.2", "arm64") {
		p, err := BundlePath(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkBundlePath(p); err != nil {
			t.Error(err)
		}
		paths[a.Name] = p
	}
	for name, want := range map[string]string{
		"kubeadm":     "bin/linux/arm64/kubeadm",
		"runc":        "runc/v1.5.2/runc.arm64",
		"containerd":  "containerd/containerd-2.4.2-linux-arm64.tar.gz",
		"crictl":      "crictl/crictl-v1.37.0-linux-arm64.tar.gz",
		"cni-plugins": "cni-plugins/cni-plugins-linux-arm64-v1.10.0.tgz",
	} {
		if paths[name] != want {
			t.Errorf("BundlePath(%s) = %s, want %s", name, paths[name], want)
		}
	}
	for _, tc := range []struct {
		file string
		want artifacts.Entry
		ok   bool
	}{
		{"socat_1.7.4.4-2_amd64.deb", artifacts.Entry{Name: "socat", Version: "1.7.4.4-2", Arch: "amd64", Kind: artifacts.KindDeb}, true},
		{"conntrack_1%3a1.4.7-1+b2_arm64.deb", artifacts.Entry{Name: "conntrack", Version: "1:1.4.7-1+b2", Arch: "arm64", Kind: artifacts.KindDeb}, true},
		{"netbase_6.4_all.deb", artifacts.Entry{Name: "netbase", Version: "6.4", Kind: artifacts.KindDeb}, true},
		{"conntrack-tools-1.4.7-2.el9.x86_64.rpm", artifacts.Entry{Name: "conntrack-tools", Version: "1.4.7-2.el9", Arch: "amd64", Kind: artifacts.KindRPM}, true},
		{"socat_1.7_i386.deb", artifacts.Entry{}, false},
		{"socat.deb", artifacts.Entry{}, false},
		{"README", artifacts.Entry{}, false},
	} {
		got, ok := PackageEntry(tc.file)
		if ok != tc.ok || got.Name != tc.want.Name || got.Version != tc.want.Version || got.Arch != tc.want.Arch || got.Kind != tc.want.Kind {
			t.Errorf("PackageEntry(%s) = %+v, %v; want %+v, %v", tc.file, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWriteBundleISORefuses(t *testing.T) {
	src := filepath.Join(t.TempDir(), "f")
	write(t, src, "x")
	for _, tc := range []struct {
		name  string
		files []BundleFile
		want  string
	}{
		{"nothing", nil, "no files"},
		{"dot dot", []BundleFile{{Path: "../x", Source: src}}, "no \"..\" in it"},
		{"hidden", []BundleFile{{Path: "a/.x", Source: src}}, "starts with a dot"},
		{"space", []BundleFile{{Path: "a b", Source: src}}, "contains ' '"},
		{"too deep", []BundleFile{{Path: "1/2/3/4/5/6/7/8/9", Source: src}}, "deeper than"},
		{"both sources", []BundleFile{{Path: "x", Source: src, Data: []byte("y")}}, "exactly one"},
		{"file and directory", []BundleFile{{Path: "a", Source: src}, {Path: "a/b", Source: src}}, "also a directory"},
		{"case collision", []BundleFile{{Path: "A", Source: src}, {Path: "a", Source: src}}, "collide"},
		{"missing source", []BundleFile{{Path: "x", Source: src + "-gone"}}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteBundleISO(filepath.Join(dir, "b.iso"), tc.files, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if got := dirNames(t, dir); len(got) != 0 {
				t.Errorf("left %q behind", got)
			}
		})
	}
}

func writeManifest(t *testing.T, dir string, spec BundleSpec) {
	t.Helper()
	m, _, err := ReadBundleDir(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, artifacts.ManifestFile), string(data))
}

func write(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(path.Dir(filepath.ToSlash(p)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(filepath.FromSlash(p)); err != nil {
		t.Fatal(err)
	}
}
