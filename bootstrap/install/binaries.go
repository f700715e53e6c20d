package install

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
)

// Bounds on what a release tarball may contain: the largest file (containerd) is about 50 MB
// and the CNI plugins tarball has some 25 entries.
const (
	maxTarEntries   = 500
	maxTarEntrySize = 1 << 30
)

// layout says where an artifact's files go.
type layout struct {
	// binary: the destination of the single file.
	dest string
	// tarball: which entries to take (by cleaned name) and the directory they go to.
	take func(name string) bool
	dir  string
	// must lists files a tarball has to provide; a tarball without them is the wrong one.
	must []string
}

func layoutOf(a artifacts.Artifact) (layout, error) {
	switch a.Name {
	case artifacts.Kubeadm, artifacts.Kubelet, artifacts.Kubectl:
		return layout{dest: path.Join(BinDir, a.Name)}, nil
	case artifacts.Runc:
		return layout{dest: path.Join(SbinDir, "runc")}, nil
	case artifacts.Containerd:
		// bin/containerd, bin/containerd-shim-runc-v2, bin/ctr (and containerd-stress).
		return layout{dir: BinDir, take: func(n string) bool { return path.Dir(n) == "bin" },
			must: []string{"containerd", "containerd-shim-runc-v2", "ctr"}}, nil
	case artifacts.Crictl:
		return layout{dir: BinDir, take: func(n string) bool { return n == "crictl" }, must: []string{"crictl"}}, nil
	case artifacts.CNIPlugins:
		// Every top-level file, as `tar -C /opt/cni/bin -xzf` does (LICENSE and README.md
		// included, as upstream's instructions leave them).
		return layout{dir: CNIBinDir, take: func(n string) bool { return !strings.Contains(n, "/") },
			must: []string{"bridge", "host-local", "loopback", "portmap"}}, nil
	}
	return layout{}, fmt.Errorf("no install layout for artifact %q", a.Name)
}

// record is /var/lib/ksboot/install/<name>.json: what an artifact installed. It is written
// after the last file is in place, so its presence means the artifact is complete.
type record struct {
	Name    string       `json:"name"`
	Version string       `json:"version"`
	Arch    string       `json:"arch"`
	SHA256  string       `json:"sha256"` // of the artifact as fetched
	Files   []recordFile `json:"files"`
}

type recordFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Mode   string `json:"mode"`
}

// Binaries installs kubeadm, kubelet and kubectl of the cluster's Kubernetes version, and
// containerd, runc, crictl and the CNI plugins at their pinned versions, from the artifact
// source. Each file is fetched to a temporary file next to its destination, checked against
// its sha256, and renamed into place; an artifact whose recorded files are all present with
// the recorded digests is skipped without touching the source.
func Binaries(ctx context.Context, o Options) error {
	o, err := o.prepare(ctx)
	if err != nil {
		return err
	}
	if err := ensureStateDirs(o); err != nil {
		return err
	}
	if err := sweepTemps(o); err != nil {
		return err
	}
	var installed, present []string
	for _, a := range artifacts.Components(o.kubernetesVersion(), o.Arch) {
		if err := ctx.Err(); err != nil {
			return err
		}
		l, err := layoutOf(a)
		if err != nil {
			return err
		}
		if upToDate(o, a) {
			o.Logger.Info("artifact already installed", "artifact", a.Name, "version", a.Version)
			present = append(present, a.Name)
			continue
		}
		rec, err := installArtifact(ctx, o, a, l)
		if err != nil {
			return sourceHint(err, o.Source)
		}
		if err := writeRecord(o, rec); err != nil {
			return err
		}
		o.Logger.Info("artifact installed", "artifact", a.Name, "version", a.Version, "from", o.Source.Location(a), "sha256", rec.SHA256)
		installed = append(installed, a.Name+" "+a.Version)
	}
	// The download directory is only a staging area; leave nothing behind.
	_ = os.Remove(o.Root.Path(DownloadDir))
	switch {
	case len(installed) == 0:
		o.say("binaries: %s already installed", joinNames(present))
	default:
		o.say("binaries: installed %s from %s", joinNames(installed), o.Source)
	}
	return nil
}

func installArtifact(ctx context.Context, o Options, a artifacts.Artifact, l layout) (record, error) {
	rec := record{Name: a.Name, Version: a.Version, Arch: a.Arch}
	if l.dest != "" {
		// A single binary is fetched straight into its directory, so the final rename never
		// crosses a file system.
		tmp, sum, err := artifacts.Fetch(ctx, o.Source, a, o.Root.Path(path.Dir(l.dest)))
		if err != nil {
			return rec, err
		}
		defer os.Remove(tmp) // no-op after the rename
		if err := os.Chmod(tmp, 0o755); err != nil {
			return rec, fmt.Errorf("installing %s: %w", l.dest, err)
		}
		if err := os.Rename(tmp, o.Root.Path(l.dest)); err != nil {
			return rec, fmt.Errorf("installing %s: %w", l.dest, err)
		}
		rec.SHA256 = sum
		rec.Files = []recordFile{{Path: l.dest, SHA256: sum, Mode: "0755"}}
		return rec, nil
	}
	tarball, sum, err := artifacts.Fetch(ctx, o.Source, a, o.Root.Path(DownloadDir))
	if err != nil {
		return rec, err
	}
	defer os.Remove(tarball)
	rec.SHA256 = sum
	files, err := extract(ctx, o, tarball, l)
	if err != nil {
		return rec, fmt.Errorf("installing %s from %s: %w", a, o.Source.Location(a), err)
	}
	rec.Files = files
	return rec, nil
}

// staged is an extracted file waiting to be renamed into place.
type staged struct {
	tmp, dest string
	file      recordFile
}

// extract stages every wanted entry of a gzipped tarball as a temporary file in its
// destination directory, and only when the whole tarball has been read renames them all into
// place. A broken tarball therefore installs nothing; a crash between two renames leaves only
// complete files, and the next run (which finds no record) installs the set again.
func extract(ctx context.Context, o Options, tarball string, l layout) (files []recordFile, err error) {
	f, err := os.Open(tarball)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("reading tarball: %w", err)
	}
	defer gz.Close()
	dir := o.Root.Path(l.dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var stage []staged
	defer func() {
		if err != nil {
			for _, s := range stage {
				os.Remove(s.tmp)
			}
		}
	}()
	tr := tar.NewReader(gz)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if n > maxTarEntries {
			return nil, fmt.Errorf("reading tarball: more than %d entries", maxTarEntries)
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading tarball: %w", err)
		}
		name := strings.TrimPrefix(path.Clean(strings.TrimPrefix(h.Name, "./")), "./")
		if h.Typeflag != tar.TypeReg || !l.take(name) {
			continue
		}
		if h.Size > maxTarEntrySize {
			return nil, fmt.Errorf("reading tarball: %s is %d bytes", name, h.Size)
		}
		base := path.Base(name)
		if base == "." || base == ".." || base == "/" {
			continue
		}
		if slices.ContainsFunc(stage, func(s staged) bool { return path.Base(s.dest) == base }) {
			return nil, fmt.Errorf("reading tarball: %s appears twice", base)
		}
		// Executables stay executable; nothing gets set-id bits or group/world write.
		mode := fs.FileMode(0o644)
		if h.FileInfo().Mode().Perm()&0o111 != 0 {
			mode = 0o755
		}
		dest := path.Join(l.dir, base)
		tmp, sum, err := writeTemp(dir, base, io.LimitReader(tr, h.Size), mode)
		if err != nil {
			return nil, fmt.Errorf("extracting %s: %w", name, err)
		}
		stage = append(stage, staged{tmp: tmp, dest: dest, file: recordFile{Path: dest, SHA256: sum, Mode: fmt.Sprintf("%04o", mode)}})
	}
	for _, m := range l.must {
		if !slices.ContainsFunc(stage, func(s staged) bool { return path.Base(s.dest) == m }) {
			return nil, fmt.Errorf("the tarball has no %s", m)
		}
	}
	for _, s := range stage {
		if err := os.Rename(s.tmp, o.Root.Path(s.dest)); err != nil {
			return nil, fmt.Errorf("installing %s: %w", s.dest, err)
		}
		files = append(files, s.file)
	}
	slices.SortFunc(files, func(a, b recordFile) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// writeTemp streams r into a new synced temporary file in dir with the given mode.
func writeTemp(dir, name string, r io.Reader, mode fs.FileMode) (tmp, sum string, err error) {
	f, err := os.CreateTemp(dir, artifacts.TempPrefix+name+"-*")
	if err != nil {
		return "", "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	if _, err = io.Copy(io.MultiWriter(f, h), r); err != nil {
		return "", "", err
	}
	if err = f.Chmod(mode); err != nil {
		return "", "", err
	}
	if err = f.Sync(); err != nil {
		return "", "", err
	}
	if err = f.Close(); err != nil {
		return "", "", err
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

func recordPath(name string) string { return path.Join(StateDir, name+".json") }

// upToDate reports whether the artifact's record matches the request and every file it lists
// is in place with its digest and mode.
func upToDate(o Options, a artifacts.Artifact) bool {
	data, err := o.Root.ReadFile(recordPath(a.Name))
	if err != nil {
		return false
	}
	var rec record
	if json.Unmarshal(data, &rec) != nil || rec.Name != a.Name || !artifacts.SameVersion(rec.Version, a.Version) || rec.Arch != a.Arch || len(rec.Files) == 0 {
		return false
	}
	for _, f := range rec.Files {
		st, err := os.Stat(o.Root.Path(f.Path))
		if err != nil || fmt.Sprintf("%04o", st.Mode().Perm()) != f.Mode {
			return false
		}
		if sum, err := artifacts.FileSHA256(o.Root.Path(f.Path)); err != nil || sum != f.SHA256 {
			return false
		}
	}
	return true
}

func writeRecord(o Options, rec record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("recording %s: %w", rec.Name, err)
	}
	if _, err := o.Root.WriteFile(recordPath(rec.Name), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("recording %s: %w", rec.Name, err)
	}
	return nil
}

// ensureStateDirs creates the agent's directories with their modes before anything else can
// create them as a side effect: /var/lib/ksboot and what is below it are the agent's, 0700.
func ensureStateDirs(o Options) error {
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{{"/var/lib", 0o755}, {"/var/lib/ksboot", 0o700}, {StateDir, 0o700}, {DownloadDir, 0o700}} {
		if err := o.Root.MkdirAll(d.path, d.mode); err != nil {
			return err
		}
	}
	return nil
}

// sweepTemps removes temporary files a killed run left in the directories this phase writes
// to. Only names with artifacts.TempPrefix are touched.
func sweepTemps(o Options) error {
	for _, dir := range []string{BinDir, SbinDir, CNIBinDir, DownloadDir} {
		entries, err := os.ReadDir(o.Root.Path(dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cleaning up %s: %w", dir, err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), artifacts.TempPrefix) && e.Type().IsRegular() {
				p := filepath.Join(o.Root.Path(dir), e.Name())
				if err := os.Remove(p); err != nil {
					return fmt.Errorf("cleaning up %s: %w", p, err)
				}
				o.Logger.Info("removed a partial file of an interrupted run", "path", path.Join(dir, e.Name()))
			}
		}
	}
	return nil
}
