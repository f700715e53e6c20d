package collect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/kubesphere"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/image"
	"github.com/ksboot/ksboot/internal/atomicfile"
)

// ErrInvalid is wrapped by errors about the options themselves (an unknown architecture or
// OS), which `ksboot bundle` reports as invalid input.
var ErrInvalid = errors.New("invalid bundle options")

// StateFile records, in the work directory, the artifacts a run has verified so far (a
// manifest.json of them), so that an interrupted run resumes without pulling them again. A run
// that finishes removes it.
const StateFile = ".bundle-state.json"

// Options say what to collect and where.
type Options struct {
	// Cluster is the defaulted, validated cluster file: its Kubernetes version, artifact
	// mirror, zone, registry, network plugin, storage and KubeSphere select the content.
	Cluster *cluster.Cluster
	// Arches are the architectures to collect for: amd64, arm64.
	Arches []string
	// WorkDir receives the files and manifest.json; it is created if missing.
	WorkDir string
	// OS lists the distributions to collect packages for ("debian-12"; "debian12" is read the
	// same). Empty means none.
	OS []string
	// ModTime is stamped in image archives; zero means now.
	ModTime time.Time
	// Out receives one short line per artifact and warnings; nil discards them.
	Out io.Writer
	// Progress, when set (a terminal), shows the progress of long downloads on one line that
	// is rewritten in place.
	Progress io.Writer
	// Logger receives details; nil discards them.
	Logger *slog.Logger

	// HTTPClient downloads binaries, Calico's manifest and the chart; nil means each
	// downloader's default (bounded) client.
	HTTPClient *http.Client
	// RegistryTransport carries registry requests; nil means go-containerregistry's default.
	RegistryTransport http.RoundTripper
	// Exec runs the package manager; nil means this machine.
	Exec host.Runner
	// HostRoot is where /etc/os-release is read; "" means "/".
	HostRoot host.Root
	// CalicoManifest overrides addons.CalicoManifest (tests use a small fake).
	CalicoManifest *addons.Artifact
}

// collector is one run.
type collector struct {
	o     Options
	c     *cluster.Cluster
	dir   string
	state *state
	// entries are this run's results, in the order they were collected.
	entries []artifacts.Entry
	// groups caches each image group's references.
	groups map[string]imageGroup
	// chartPath is the ks-core chart's path in the work directory (KubeSphere v4).
	chartPath string
}

// Collect downloads the cluster's artifacts into o.WorkDir, writes manifest.json there and
// returns the manifest. Every file is verified before it is listed; on an error the work
// directory keeps what was verified, for the next run.
func Collect(ctx context.Context, o Options) (*artifacts.Manifest, error) {
	o, targets, err := o.check()
	if err != nil {
		return nil, err
	}
	c := &collector{o: o, c: o.Cluster, dir: o.WorkDir}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the work directory: %w", err)
	}
	if err := removeTemps(c.dir); err != nil {
		return nil, err
	}
	c.state = loadState(c.dir, o.Logger)
	// Packages can be had only on a machine of the distribution: say so before downloading
	// gigabytes of images.
	for _, t := range targets {
		if err := c.checkPackageHost(ctx, t); err != nil {
			return nil, err
		}
	}
	steps, err := c.plan(targets)
	if err != nil {
		return nil, err
	}
	version := c.c.Spec.Kubernetes.Version
	fmt.Fprintf(o.Out, "collecting Kubernetes %s components for %s into %s\n", version, strings.Join(o.Arches, ","), c.dir)
	for i, s := range steps {
		entries, how, err := s.run(ctx)
		if err != nil {
			return nil, err
		}
		line := fmt.Sprintf("[%d/%d] %s: %s", i+1, len(steps), s.what, how)
		if len(entries) == 1 {
			line += " (sha256 " + entries[0].SHA256 + ")"
		}
		fmt.Fprintln(o.Out, line)
		c.entries = append(c.entries, entries...)
		if err := c.state.record(entries); err != nil {
			return nil, err
		}
	}
	m := &artifacts.Manifest{FormatVersion: artifacts.ManifestFormatVersion, KubernetesVersion: version, Artifacts: c.entries}
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if err := c.prune(m); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(c.dir, artifacts.ManifestFile), data, 0o644, 0o755); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(c.dir, StateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("removing the resume state: %w", err)
	}
	return m, nil
}

// warn tells the operator about something that may make the bundle incomplete.
func (c *collector) warn(msg string) {
	fmt.Fprintln(c.o.Out, "warning: "+msg)
	c.o.Logger.Warn(msg)
}

// check validates and defaults the options.
func (o Options) check() (Options, []osTarget, error) {
	if o.Cluster == nil {
		return o, nil, fmt.Errorf("%w: no cluster given", ErrInvalid)
	}
	if o.WorkDir == "" {
		return o, nil, fmt.Errorf("%w: no work directory given", ErrInvalid)
	}
	if len(o.Arches) == 0 {
		return o, nil, fmt.Errorf("%w: no architecture given", ErrInvalid)
	}
	for _, a := range o.Arches {
		if a != "amd64" && a != "arm64" {
			return o, nil, fmt.Errorf("%w: architecture %q: use amd64 or arm64", ErrInvalid, a)
		}
	}
	o.Arches = slices.Compact(slices.Sorted(slices.Values(o.Arches)))
	var targets []osTarget
	for _, s := range o.OS {
		t, err := ParseOS(s)
		if err != nil {
			return o, nil, err
		}
		if !slices.ContainsFunc(targets, func(x osTarget) bool { return x.Name == t.Name }) {
			targets = append(targets, t)
		}
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Exec == nil {
		o.Exec = host.Real{}
	}
	if o.HostRoot == "" {
		o.HostRoot = "/"
	}
	return o, targets, nil
}

// step is one item of the plan: it yields verified manifest entries and says how ("already
// downloaded", "downloaded from <url>").
type step struct {
	what string
	run  func(ctx context.Context) ([]artifacts.Entry, string, error)
}

// plan lists the steps in order: binaries, Calico's manifest, the chart (the image lists of the
// CNI and of KubeSphere v4 are read from those two), the image archives, the packages.
func (c *collector) plan(targets []osTarget) ([]step, error) {
	var steps []step
	version := c.c.Spec.Kubernetes.Version
	src := artifacts.NewHTTPMirror(c.c.Spec.Artifacts, c.c.Spec.Zone, c.o.HTTPClient)
	for _, arch := range c.o.Arches {
		for _, a := range artifacts.Components(version, arch) {
			steps = append(steps, step{what: a.String(), run: func(ctx context.Context) ([]artifacts.Entry, string, error) {
				return c.binary(ctx, src, a)
			}})
		}
	}
	if c.c.Spec.Network.Plugin == "calico" {
		steps = append(steps, step{what: "calico manifest " + addons.CalicoVersion, run: c.calicoManifest})
	}
	chart, err := c.chartStep()
	if err != nil {
		return nil, err
	}
	if chart != nil {
		steps = append(steps, *chart)
	}
	for _, g := range c.imageGroups() {
		for _, arch := range c.o.Arches {
			steps = append(steps, step{what: fmt.Sprintf("images %s (linux/%s)", g, arch), run: func(ctx context.Context) ([]artifacts.Entry, string, error) {
				return c.imageArchive(ctx, g, arch)
			}})
		}
	}
	for _, t := range targets {
		steps = append(steps, step{what: fmt.Sprintf("packages %s (%s)", t.Name, strings.Join(c.o.Arches, ",")), run: func(ctx context.Context) ([]artifacts.Entry, string, error) {
			return c.packages(ctx, t)
		}})
	}
	return steps, nil
}

// binary makes the artifact's file in the work directory. The checksum comes first: a file
// already there with that sha256 is kept (the download's body is never read), so a second run
// costs one small request per artifact.
func (c *collector) binary(ctx context.Context, src artifacts.Source, a artifacts.Artifact) ([]artifacts.Entry, string, error) {
	rel, err := image.BundlePath(a)
	if err != nil {
		return nil, "", err
	}
	dst := filepath.Join(c.dir, filepath.FromSlash(rel))
	entry := func(sum string) []artifacts.Entry {
		return []artifacts.Entry{{Name: a.Name, Version: a.Version, Arch: a.Arch, Kind: a.Kind, Path: rel, SHA256: sum}}
	}
	blob, err := src.Open(ctx, a)
	if err != nil {
		return nil, "", fmt.Errorf("downloading %s from %s: %w", a, src.Location(a), err)
	}
	want := strings.ToLower(blob.SHA256)
	if have, err := artifacts.FileSHA256(dst); err == nil && have == want {
		blob.Body.Close()
		return entry(have), "already downloaded", nil
	}
	bar := newMeter(c.o.Progress, a.String(), 0)
	blob.Body = readCloser{bar.reader(blob.Body), blob.Body}
	tmp, sum, err := artifacts.Fetch(ctx, openedSource{src, blob}, a, filepath.Dir(dst))
	bar.finish()
	if err != nil {
		return nil, "", err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return nil, "", fmt.Errorf("downloading %s: %w", a, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return nil, "", fmt.Errorf("downloading %s: %w", a, err)
	}
	return entry(sum), "downloaded from " + src.Location(a), nil
}

// openedSource hands Fetch a blob already opened (its checksum was needed first), so the
// file is requested once.
type openedSource struct {
	artifacts.Source
	blob *artifacts.Blob
}

func (o openedSource) Open(context.Context, artifacts.Artifact) (*artifacts.Blob, error) {
	return o.blob, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// removeTemps deletes what an interrupted run left in the work directory: files carrying
// artifacts.TempPrefix or atomicfile's mark, image's staging files (".<name>.tmp-*"), and
// TempPrefix directories (apt-get's private state). A bundle path never starts with a dot
// (image.WriteBundleISO refuses it), so nothing that belongs in the bundle is touched.
func removeTemps(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		switch {
		case p == dir:
			return nil
		case d.IsDir() && strings.HasPrefix(name, artifacts.TempPrefix):
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("removing a partial download: %w", err)
			}
			return filepath.SkipDir
		case !d.Type().IsRegular():
			return nil
		case strings.HasPrefix(name, artifacts.TempPrefix) || atomicfile.IsTemp(name) ||
			(strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")):
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("removing a partial download: %w", err)
			}
		}
		return nil
	})
}

// prune removes files of the kinds Collect writes (image archives, charts, manifests,
// packages) that the new manifest does not list: leftovers of a run for another version,
// network plugin or package set, which would otherwise make the directory fail to pack.
// Binaries' directories are left alone: their paths do not change with anything but the
// version, and the work directory may be shared with the operator's own files.
func (c *collector) prune(m *artifacts.Manifest) error {
	listed := map[string]bool{}
	for _, e := range m.Artifacts {
		listed[e.Path] = true
	}
	dirs := map[string][]string{
		imagesDir:            {".tar"},
		addonManifestsDir:    {".yaml"},
		kubesphere.ChartsDir: {".tgz"},
	}
	osDirs, _ := os.ReadDir(filepath.Join(c.dir, image.PackagesDir))
	for _, d := range osDirs {
		if d.IsDir() {
			dirs[path.Join(image.PackagesDir, d.Name())] = []string{".deb", ".rpm"}
		}
	}
	for dir, exts := range dirs {
		files, err := os.ReadDir(filepath.Join(c.dir, filepath.FromSlash(dir)))
		if err != nil {
			continue
		}
		for _, f := range files {
			rel := path.Join(dir, f.Name())
			if !f.Type().IsRegular() || listed[rel] || !slices.Contains(exts, path.Ext(f.Name())) {
				continue
			}
			if err := os.Remove(filepath.Join(c.dir, filepath.FromSlash(rel))); err != nil {
				return fmt.Errorf("removing %s: %w", rel, err)
			}
			fmt.Fprintf(c.o.Out, "removed %s: this bundle no longer lists it\n", rel)
		}
	}
	return nil
}

// state is what earlier runs verified: the state file of an interrupted run, or the manifest
// of a finished one.
type state struct {
	file string
	prev []artifacts.Entry
	cur  []artifacts.Entry
}

func loadState(dir string, log *slog.Logger) *state {
	s := &state{file: filepath.Join(dir, StateFile)}
	for _, name := range []string{StateFile, artifacts.ManifestFile} {
		p := filepath.Join(dir, name)
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		m, err := artifacts.ParseManifest(p, data)
		if err != nil {
			log.Warn("ignoring an unreadable record of an earlier run", "err", err)
			continue
		}
		s.prev = m.Artifacts
		break
	}
	return s
}

// find returns what an earlier run recorded for a path.
func (s *state) find(rel string) (artifacts.Entry, bool) {
	for _, e := range s.prev {
		if e.Path == rel {
			return e, true
		}
	}
	return artifacts.Entry{}, false
}

// record adds verified entries and rewrites the state file atomically. Entries of earlier runs
// are kept (a resumed run may not have reached them yet) unless a new entry replaced their path.
func (s *state) record(entries []artifacts.Entry) error {
	s.cur = append(s.cur, entries...)
	all := slices.Clone(s.cur)
	for _, e := range s.prev {
		if !slices.ContainsFunc(all, func(x artifacts.Entry) bool { return x.Path == e.Path }) {
			all = append(all, e)
		}
	}
	// Not Manifest.Marshal: an earlier run's entry may duplicate a new one under another path;
	// the state is read back only for lookups by path, and an invalid one is ignored.
	data, err := json.MarshalIndent(artifacts.Manifest{FormatVersion: artifacts.ManifestFormatVersion, Artifacts: all}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.file, append(data, '\n'), 0o644, 0o755); err != nil {
		return fmt.Errorf("recording progress for a resumed run: %w", err)
	}
	return nil
}
