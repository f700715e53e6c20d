package image

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
)

// The offline bundle (see bootstrap/install/artifacts for the manifest format) is the one
// medium this package writes that holds no secrets and large files: it is packed from files on
// disk rather than from memory, in directories, and published 0644.

// BundleFile is one file of an offline bundle.
type BundleFile struct {
	// Path is where the file sits in the medium: slash-separated, relative, without "..".
	Path string
	// Source is the file's content on this machine. Exactly one of Source and Data is set.
	Source string
	// Data is a small file built in memory (manifest.json).
	Data []byte
}

// bundleMode is the permission of every file in a bundle medium and of the medium itself:
// nothing in it is secret or executable in place (the install phase copies and chmods).
const bundleMode fs.FileMode = 0o644

// maxBundleDepth keeps paths inside ECMA-119's eight directory levels.
const maxBundleDepth = 8

// WriteBundleISO writes files as an ISO9660 volume with Rock Ridge and Joliet, labelled
// opts.Label (default artifacts.DefaultLabel, the label `spec.artifacts.bundle: label:KSBUNDLE`
// finds), atomically and 0644. Directories are created as the paths need them.
func WriteBundleISO(path string, files []BundleFile, opts Options) error {
	if err := writeBundleISO(path, files, opts); err != nil {
		return fmt.Errorf("writing bundle ISO %s: %w", path, err)
	}
	return nil
}

func writeBundleISO(dst string, files []BundleFile, opts Options) error {
	files, err := checkBundleFiles(files)
	if err != nil {
		return err
	}
	label := opts.Label
	if label == "" {
		label = artifacts.DefaultLabel
	}
	if err := checkISOLabel(label); err != nil {
		return err
	}
	mtime := modTime(opts.ModTime)
	if y := mtime.Year(); y < 1900 || y > 2155 {
		return fmt.Errorf("modification time %s is outside 1900..2155, the years an ISO9660 directory record can hold", mtime.Format(time.RFC3339))
	}
	// The staging directory sits next to the output (not in a RAM-backed /tmp): a bundle is
	// hundreds of megabytes.
	ws, err := os.MkdirTemp(filepath.Dir(dst), tempPattern(dst, "work"))
	if err != nil {
		return err
	}
	defer os.RemoveAll(ws)
	tmp, err := stageTemp(dst, func(out *os.File) error {
		fsys, err := iso9660.Create(zeroSkippingBackend(out), 0, 0, isoBlockSize, ws)
		if err != nil {
			return fmt.Errorf("creating ISO9660 file system: %w", err)
		}
		for _, f := range files {
			if err := stageBundleFile(ws, f, mtime); err != nil {
				return err
			}
		}
		// Directories get the bundle's time too: go-diskfs copies their times into records
		// (some of which no directory tree reaches, so normalizeISO cannot fix them), and a
		// directory made now would make two bundles of the same files differ.
		if err := chtimesDirs(ws, mtime); err != nil {
			return err
		}
		if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, Joliet: true, VolumeIdentifier: label}); err != nil {
			return fmt.Errorf("finalizing ISO9660 file system: %w", err)
		}
		return normalizeISO(out, mtime)
	})
	if err != nil {
		return err
	}
	// The bundle is public content: readable by whoever attaches it to a machine.
	return publishPublic(tmp, dst)
}

// checkBundleFiles validates paths (each a valid Rock Ridge/Joliet name at every level) and
// returns the files sorted by path, so the medium does not depend on the caller's order.
func checkBundleFiles(files []BundleFile) ([]BundleFile, error) {
	if len(files) == 0 {
		return nil, errors.New("no files given; a bundle needs at least manifest.json")
	}
	out := slices.Clone(files)
	slices.SortFunc(out, func(a, b BundleFile) int { return strings.Compare(a.Path, b.Path) })
	seen := map[string]string{}
	for _, f := range out {
		if err := checkBundlePath(f.Path); err != nil {
			return nil, err
		}
		if (f.Source == "") == (f.Data == nil) {
			return nil, fmt.Errorf("bundle file %s: set exactly one of Source and Data", f.Path)
		}
		// A directory and a file of one name, or two names differing only in case, would
		// collide on a case-insensitive reader (Joliet on Windows).
		folded := strings.ToLower(f.Path)
		if prev, dup := seen[folded]; dup {
			return nil, fmt.Errorf("bundle files %s and %s collide", prev, f.Path)
		}
		seen[folded] = f.Path
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if prev, ok := seen[strings.ToLower(d)]; ok {
				return nil, fmt.Errorf("bundle file %s is also a directory of %s", prev, f.Path)
			}
		}
	}
	return out, nil
}

// checkBundlePath allows the characters Debian and RPM file names use (letters, digits,
// - _ . + ~ %) in each component, and keeps components within Joliet's 64 characters.
func checkBundlePath(p string) error {
	if !fs.ValidPath(p) || p == "." || strings.Contains(p, `\`) {
		return fmt.Errorf("bundle path %q must be relative and slash-separated, with no \"..\" in it", p)
	}
	parts := strings.Split(p, "/")
	if len(parts) > maxBundleDepth {
		return fmt.Errorf("bundle path %q is deeper than %d levels", p, maxBundleDepth)
	}
	for _, part := range parts {
		if len(part) > maxNameLen {
			return fmt.Errorf("bundle path %q: %q is longer than %d characters", p, part, maxNameLen)
		}
		if part[0] == '.' {
			return fmt.Errorf("bundle path %q: %q starts with a dot", p, part)
		}
		for _, c := range part {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.+~%", c)
			if !ok {
				return fmt.Errorf("bundle path %q contains %q; use only letters, digits and the characters - _ . + ~ %% in it", p, c)
			}
		}
	}
	return nil
}

// chtimesDirs sets the access and modification times of root and every directory below it.
func chtimesDirs(root string, t time.Time) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chtimes(p, t, t)
	})
}

// stageBundleFile copies one file into the go-diskfs workspace with the bundle's mode and
// mtime. A copy, not a hard link: Rock Ridge takes the mode from the staged file, and the
// caller's file must keep its own.
func stageBundleFile(ws string, f BundleFile, mtime time.Time) (err error) {
	dst := filepath.Join(ws, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("adding %s: %w", f.Path, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, bundleMode)
	if err != nil {
		return fmt.Errorf("adding %s: %w", f.Path, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("adding %s: %w", f.Path, cerr)
		}
	}()
	var n int64
	if f.Data != nil {
		var k int
		k, err = out.Write(f.Data)
		n = int64(k)
	} else {
		var in *os.File
		in, err = os.Open(f.Source)
		if err != nil {
			return fmt.Errorf("adding %s: %w", f.Path, err)
		}
		defer in.Close()
		n, err = io.Copy(out, in)
	}
	if err != nil {
		return fmt.Errorf("adding %s: %w", f.Path, err)
	}
	if n > maxFileSize {
		return fmt.Errorf("adding %s: %d bytes; ISO9660 stores at most %d bytes per file", f.Path, n, int64(maxFileSize))
	}
	if err := os.Chmod(dst, bundleMode); err != nil { // the umask may have narrowed it
		return fmt.Errorf("adding %s: %w", f.Path, err)
	}
	return os.Chtimes(dst, mtime, mtime)
}

// BundlePath is where `ksboot bundle` puts a component in a bundle: Kubernetes binaries under
// bin/linux/<arch>/, runc under runc/<version>/runc.<arch>, release tarballs under
// <name>/<upstream file name> (which carries the version and architecture).
func BundlePath(a artifacts.Artifact) (string, error) {
	switch a.Name {
	case artifacts.Kubeadm, artifacts.Kubelet, artifacts.Kubectl:
		return path.Join("bin", "linux", a.Arch, a.Name), nil
	case artifacts.Runc:
		return path.Join("runc", "v"+strings.TrimPrefix(a.Version, "v"), "runc."+a.Arch), nil
	}
	file, _, err := artifacts.UpstreamURLs(a)
	if err != nil {
		return "", err
	}
	return path.Join(a.Name, path.Base(file)), nil
}

// PackagesDir holds OS packages in a bundle, one directory per distribution
// ("packages/debian-12/socat_1.7.4.4-2_amd64.deb"); the directory name is the entry's os.
const PackagesDir = "packages"

// BundleSpec says what a bundle directory without manifest.json is expected to hold.
type BundleSpec struct {
	// KubernetesVersion and Arches select the components (artifacts.Components for each
	// architecture); each must be at its BundlePath.
	KubernetesVersion string
	Arches            []string
}

// ReadBundleDir checks a bundle directory and returns its manifest and the files to pack
// (manifest.json included). With a manifest.json, every entry's file must exist with the listed
// sha256. Without one, the manifest is made from spec: every component at its BundlePath,
// every .deb and .rpm under packages/<os>/ (name, version and architecture from the file name,
// as apt and dnf name them), and every image archive images/<name>-<arch>.tar (with the
// references it holds, see imageEntries). Either way a file that the manifest does not list is an error:
// nothing unverified reaches a node.
func ReadBundleDir(dir string, spec BundleSpec) (*artifacts.Manifest, []BundleFile, error) {
	m, err := bundleManifest(dir, spec)
	if err != nil {
		return nil, nil, err
	}
	listed := map[string]bool{artifacts.ManifestFile: true}
	var files []BundleFile
	var problems []string
	for _, e := range m.Artifacts {
		listed[e.Path] = true
		src := filepath.Join(dir, filepath.FromSlash(e.Path))
		sum, err := artifacts.FileSHA256(src)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			problems = append(problems, fmt.Sprintf("%s (%s) is missing", e.Path, e))
			continue
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", e.Path, err))
			continue
		case sum != e.SHA256:
			problems = append(problems, fmt.Sprintf("%s (%s): sha256 is %s, the manifest says %s", e.Path, e, sum, e.SHA256))
			continue
		}
		files = append(files, BundleFile{Path: e.Path, Source: src})
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() || listed[rel] {
			return nil
		}
		problems = append(problems, fmt.Sprintf("%s is not in the manifest", rel))
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reading bundle directory %s: %w", dir, err)
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("bundle directory %s: %s", dir, strings.Join(problems, "; "))
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, nil, err
	}
	files = append(files, BundleFile{Path: artifacts.ManifestFile, Data: data})
	return m, files, nil
}

// bundleManifest reads dir/manifest.json, or makes a manifest from spec when there is none.
func bundleManifest(dir string, spec BundleSpec) (*artifacts.Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, artifacts.ManifestFile))
	if err == nil {
		return artifacts.ParseManifest(filepath.Join(dir, artifacts.ManifestFile), data)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading bundle manifest: %w", err)
	}
	if spec.KubernetesVersion == "" || len(spec.Arches) == 0 {
		return nil, fmt.Errorf("bundle directory %s has no %s: name the Kubernetes version and architectures it holds", dir, artifacts.ManifestFile)
	}
	m := &artifacts.Manifest{FormatVersion: artifacts.ManifestFormatVersion, KubernetesVersion: spec.KubernetesVersion}
	for _, arch := range spec.Arches {
		for _, a := range artifacts.Components(spec.KubernetesVersion, arch) {
			p, err := BundlePath(a)
			if err != nil {
				return nil, err
			}
			sum, err := artifacts.FileSHA256(filepath.Join(dir, filepath.FromSlash(p)))
			if err != nil {
				return nil, fmt.Errorf("bundle directory %s: %s %s (linux/%s) should be at %s: %w", dir, a.Name, a.Version, a.Arch, p, err)
			}
			m.Artifacts = append(m.Artifacts, artifacts.Entry{Name: a.Name, Version: a.Version, Arch: a.Arch, Kind: a.Kind, Path: p, SHA256: sum})
		}
	}
	osDirs, err := os.ReadDir(filepath.Join(dir, PackagesDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading bundle packages: %w", err)
	}
	for _, od := range osDirs {
		if !od.IsDir() {
			continue // reported as not in the manifest
		}
		pkgs, err := os.ReadDir(filepath.Join(dir, PackagesDir, od.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading bundle packages: %w", err)
		}
		for _, pf := range pkgs {
			e, ok := PackageEntry(pf.Name())
			if !ok || !pf.Type().IsRegular() {
				continue // reported as not in the manifest
			}
			e.OS = od.Name()
			e.Path = path.Join(PackagesDir, od.Name(), pf.Name())
			if e.SHA256, err = artifacts.FileSHA256(filepath.Join(dir, filepath.FromSlash(e.Path))); err != nil {
				return nil, fmt.Errorf("reading bundle packages: %w", err)
			}
			m.Artifacts = append(m.Artifacts, e)
		}
	}
	images, err := imageEntries(dir, spec)
	if err != nil {
		return nil, err
	}
	m.Artifacts = append(m.Artifacts, images...)
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("bundle directory %s: %w", dir, err)
	}
	return m, nil
}

// ImagesDir holds container image archives in a bundle, one per set of images and
// architecture: "images/kubernetes-amd64.tar".
const ImagesDir = "images"

// goArches are the architecture names Go (and so the manifest) uses.
var goArches = []string{"386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64", "ppc64le", "riscv64", "s390x", "wasm"}

// imageEntries makes an entry of kind image for every images/<name>-<arch>.tar, listing the
// references the archive holds (ImageArchiveRefs), so the install phase can check after
// `ctr images import` that the node has every one.
func imageEntries(dir string, spec BundleSpec) ([]artifacts.Entry, error) {
	files, err := os.ReadDir(filepath.Join(dir, ImagesDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading bundle images: %w", err)
	}
	var entries []artifacts.Entry
	for _, f := range files {
		base, isTar := strings.CutSuffix(f.Name(), ".tar")
		if !isTar || !f.Type().IsRegular() {
			continue // reported as not in the manifest
		}
		p := path.Join(ImagesDir, f.Name())
		i := strings.LastIndexByte(base, '-')
		if i <= 0 || !slices.Contains(goArches, base[i+1:]) {
			return nil, fmt.Errorf("bundle directory %s: %s: name image archives %s/<name>-<arch>.tar, with a Go architecture name such as amd64 or arm64", dir, p, ImagesDir)
		}
		src := filepath.Join(dir, filepath.FromSlash(p))
		refs, err := ImageArchiveRefs(src)
		if err != nil {
			return nil, fmt.Errorf("bundle directory %s: %s: %w", dir, p, err)
		}
		e := artifacts.Entry{Name: base[:i], Arch: base[i+1:], Kind: artifacts.KindImage, Path: p, Images: refs}
		if e.Version, err = imagesVersion(e.Name, refs, spec.KubernetesVersion); err != nil {
			return nil, fmt.Errorf("bundle directory %s: %s: %w", dir, p, err)
		}
		if e.SHA256, err = artifacts.FileSHA256(src); err != nil {
			return nil, fmt.Errorf("reading bundle images: %w", err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// imagesVersion labels an archive of several images with one tag, for messages and to tell
// entries apart: the tag of the image named like the archive ("flannel" in
// flannel-amd64.tar), else the bundle's Kubernetes version when an image carries it (kubeadm's
// control-plane images), else the tag of the first reference. refs are sorted.
func imagesVersion(archive string, refs []string, k8sVersion string) (string, error) {
	var tags, repos []string
	for _, r := range refs {
		ref, err := name.ParseReference(r)
		if err != nil {
			return "", fmt.Errorf("image reference %q: %w", r, err)
		}
		if t, ok := ref.(name.Tag); ok {
			tags = append(tags, t.TagStr())
			repos = append(repos, path.Base(t.RepositoryStr()))
		}
	}
	if len(tags) == 0 {
		return "", errors.New("no image in the archive is tagged; the manifest needs a version for it")
	}
	if i := slices.Index(repos, archive); i >= 0 {
		return tags[i], nil
	}
	if k8sVersion != "" && slices.Contains(tags, k8sVersion) {
		return k8sVersion, nil
	}
	return tags[0], nil
}

// PackageEntry reads a package's name, version and architecture from its file name, as apt
// ("name_version_arch.deb", an epoch's colon written %3a) and dnf ("name-version-release.arch.rpm")
// name downloads. The architecture is given in Go's names; "all" and "noarch" leave it empty.
// ok is false for other file names.
func PackageEntry(file string) (e artifacts.Entry, ok bool) {
	arch := func(a string) (string, bool) {
		switch a {
		case "amd64", "x86_64":
			return "amd64", true
		case "arm64", "aarch64":
			return "arm64", true
		case "all", "noarch":
			return "", true
		}
		return "", false
	}
	if base, found := strings.CutSuffix(file, ".deb"); found {
		f := strings.Split(base, "_")
		if len(f) != 3 || f[0] == "" || f[1] == "" {
			return e, false
		}
		v, err := url.PathUnescape(f[1])
		a, known := arch(f[2])
		if err != nil || !known {
			return e, false
		}
		return artifacts.Entry{Name: f[0], Version: v, Arch: a, Kind: artifacts.KindDeb}, true
	}
	if base, found := strings.CutSuffix(file, ".rpm"); found {
		dot := strings.LastIndexByte(base, '.')
		if dot < 0 {
			return e, false
		}
		a, known := arch(base[dot+1:])
		nvr := strings.Split(base[:dot], "-")
		if !known || len(nvr) < 3 {
			return e, false
		}
		n := len(nvr)
		return artifacts.Entry{Name: strings.Join(nvr[:n-2], "-"), Version: nvr[n-2] + "-" + nvr[n-1], Arch: a, Kind: artifacts.KindRPM}, true
	}
	return e, false
}

// publishPublic gives a finished temporary file the bundle's public mode and renames it to
// dst, removing it on failure; the bundle ISO and image archives end the same way.
func publishPublic(tmp, dst string) error {
	if err := os.Chmod(tmp, bundleMode); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(dst))
}
