package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ksboot/ksboot/bootstrap/host"
)

// MountPoint is where a bundle on an ISO image or a device is mounted (read-only). /run is
// cleared at boot, so a stale mount never outlives the machine's state; the agent leaves it
// mounted for later phases (charts, manifests) of the same run.
const MountPoint = "/run/ksboot/bundle"

// LabelPrefix in spec.artifacts.bundle selects a volume by its label ("label:KSBUNDLE").
const LabelPrefix = "label:"

// DefaultLabel is the volume label `ksboot bundle` gives its ISO.
const DefaultLabel = "KSBUNDLE"

// Bundle is an offline bundle: a directory with manifest.json and the files it lists.
type Bundle struct {
	// Dir is the bundle's top on this machine (under the agent's root).
	Dir string
	// NodeDir is the same directory as the node sees it, for messages.
	NodeDir  string
	Manifest *Manifest
}

// OpenBundle reads and checks the manifest of the bundle in dir (a host path); nodeDir is the
// node's name for the same directory.
func OpenBundle(dir, nodeDir string) (*Bundle, error) {
	name := path.Join(nodeDir, ManifestFile)
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading bundle manifest %s: %w: this is not a ksboot bundle", name, ErrNotFound)
		}
		return nil, fmt.Errorf("reading bundle manifest %s: %w", name, err)
	}
	m, err := ParseManifest(name, data)
	if err != nil {
		return nil, err
	}
	return &Bundle{Dir: dir, NodeDir: nodeDir, Manifest: m}, nil
}

// String names the bundle.
func (b *Bundle) String() string { return "bundle " + b.NodeDir }

// Location is the artifact's path in the bundle, or the manifest when it is not listed.
func (b *Bundle) Location(a Artifact) string {
	if e, ok := b.Manifest.Find(a); ok {
		return path.Join(b.NodeDir, e.Path)
	}
	return path.Join(b.NodeDir, ManifestFile)
}

// Open opens the artifact's file; its sha256 is the manifest's.
func (b *Bundle) Open(_ context.Context, a Artifact) (*Blob, error) {
	e, ok := b.Manifest.Find(a)
	if !ok {
		return nil, fmt.Errorf("%w in the bundle (%s)", ErrNotFound, b.Manifest.describe(a.Name))
	}
	f, err := os.Open(filepath.Join(b.Dir, filepath.FromSlash(e.Path)))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: listed in the manifest but missing from the bundle", ErrNotFound)
		}
		return nil, err
	}
	return &Blob{Body: f, SHA256: e.SHA256, Location: path.Join(b.NodeDir, e.Path)}, nil
}

// Files lists the manifest's entries of a kind, in manifest order.
func (b *Bundle) Files(kind Kind) []Entry {
	var out []Entry
	for _, e := range b.Manifest.Artifacts {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// LocalPath verifies the entry's file and returns its host path.
func (b *Bundle) LocalPath(e Entry) (string, error) {
	p := filepath.Join(b.Dir, filepath.FromSlash(e.Path))
	sum, err := FileSHA256(p)
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%w: listed in the manifest but missing from the bundle", ErrNotFound)
	} else if err == nil && sum != e.SHA256 {
		err = fmt.Errorf("%w: got %s, want %s", ErrChecksum, sum, e.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("installing %s from %s: %w", e, path.Join(b.NodeDir, e.Path), err)
	}
	return p, nil
}

// Locator finds the bundle spec.artifacts.bundle names and mounts it when it is an image or a
// device. Mounting goes through the runner, so tests and dry runs only record it.
type Locator struct {
	Root host.Root
	Exec host.Runner
	// Wait bounds the search for a labelled volume (a CD-ROM may appear a little after the
	// agent starts); 0 means 30s. Poll is the pause between searches; 0 means 3s.
	Wait time.Duration
	Poll time.Duration
}

// Open returns the bundle named by spec: "label:<LABEL>", or an absolute node path to a
// directory, an ISO image file or a block device.
func (l Locator) Open(ctx context.Context, spec string) (*Bundle, error) {
	if label, ok := strings.CutPrefix(spec, LabelPrefix); ok {
		if l.mounted() {
			return OpenBundle(l.Root.Path(MountPoint), MountPoint)
		}
		dev, err := l.findLabel(ctx, label)
		if err != nil {
			return nil, err
		}
		return l.mount(ctx, spec, dev, "ro")
	}
	if !path.IsAbs(spec) {
		return nil, fmt.Errorf("spec.artifacts.bundle %q: want an absolute path or %s<LABEL>", spec, LabelPrefix)
	}
	st, err := os.Stat(l.Root.Path(spec))
	if err != nil {
		return nil, fmt.Errorf("opening bundle %s: %w", spec, err)
	}
	switch {
	case st.IsDir():
		return OpenBundle(l.Root.Path(spec), spec)
	case (st.Mode().IsRegular() || st.Mode()&fs.ModeDevice != 0) && l.mounted():
		return OpenBundle(l.Root.Path(MountPoint), MountPoint)
	case st.Mode().IsRegular():
		return l.mount(ctx, spec, l.Root.Path(spec), "ro,loop")
	case st.Mode()&fs.ModeDevice != 0:
		return l.mount(ctx, spec, l.Root.Path(spec), "ro")
	}
	return nil, fmt.Errorf("opening bundle %s: not a directory, an image file or a device", spec)
}

// mounted reports whether an earlier run of this boot mounted the bundle already (the agent
// resumes after a crash); mounting again would stack a second mount on the first.
func (l Locator) mounted() bool { return l.Root.Exists(path.Join(MountPoint, ManifestFile)) }

func (l Locator) mount(ctx context.Context, spec, source, opts string) (*Bundle, error) {
	if err := l.Root.MkdirAll(MountPoint, 0o755); err != nil {
		return nil, err
	}
	if _, err := l.Exec.Run(ctx, host.Cmd{Name: "mount", Args: []string{"-o", opts, source, l.Root.Path(MountPoint)}}); err != nil {
		return nil, fmt.Errorf("mounting bundle %s at %s: %w", spec, MountPoint, err)
	}
	return OpenBundle(l.Root.Path(MountPoint), MountPoint)
}

// findLabel asks blkid for the device with a volume label, retrying until Wait has passed.
func (l Locator) findLabel(ctx context.Context, label string) (string, error) {
	wait, poll := l.Wait, l.Poll
	if wait <= 0 {
		wait = 30 * time.Second
	}
	if poll <= 0 {
		poll = 3 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		out, err := l.Exec.Run(ctx, host.Cmd{Name: "blkid", Args: []string{"-t", "LABEL=" + label, "-o", "device"}})
		devs := strings.Fields(string(out))
		if err == nil && len(devs) == 1 {
			return devs[0], nil
		}
		if err == nil && len(devs) > 1 {
			slices.Sort(devs)
			return "", fmt.Errorf("finding the bundle: %d volumes are labelled %s (%s); detach all but one", len(devs), label, strings.Join(devs, ", "))
		}
		if err != nil {
			// blkid exits 2, silently, when nothing matches. A command that could not start
			// (exit code -1) or that said something failed for real.
			var re *host.RunError
			notFound := errors.As(err, &re) && re.ExitCode > 0 && strings.TrimSpace(string(re.Output)) == ""
			if !notFound {
				return "", fmt.Errorf("finding the bundle volume labelled %s: %w", label, err)
			}
		}
		if time.Now().Add(poll).After(deadline) {
			return "", fmt.Errorf("finding the bundle: no volume labelled %s after %s (blkid -t LABEL=%s): %w", label, wait, label, ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("finding the bundle volume labelled %s: %w", label, ctx.Err())
		case <-time.After(poll):
		}
	}
}
