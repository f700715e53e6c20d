package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ksboot/ksboot/versions"
)

// Kind says what an artifact is and therefore how it is installed.
type Kind string

// Kinds of artifacts.
const (
	KindBinary  Kind = "binary"
	KindTarball Kind = "tarball"
	KindImage   Kind = "image"
	KindDeb     Kind = "deb"
	KindRPM     Kind = "rpm"
	// KindChart is a Helm chart archive (the ks-core chart of KubeSphere v4) under charts/.
	KindChart Kind = "chart"
	// KindManifest is a third-party Kubernetes manifest the addons phase applies (Calico's),
	// under manifests/.
	KindManifest Kind = "manifest"
)

var kinds = []Kind{KindBinary, KindTarball, KindImage, KindDeb, KindRPM, KindChart, KindManifest}

// Component names: what the install phase asks a source for.
const (
	Kubeadm    = "kubeadm"
	Kubelet    = "kubelet"
	Kubectl    = "kubectl"
	Containerd = "containerd"
	Runc       = "runc"
	Crictl     = "crictl"
	CNIPlugins = "cni-plugins"
)

// Artifact names one file a node needs.
type Artifact struct {
	Name    string
	Version string // release tag, e.g. v1.37.2
	Arch    string // amd64 or arm64
	Kind    Kind
}

func (a Artifact) String() string {
	return fmt.Sprintf("%s %s (linux/%s)", a.Name, a.Version, a.Arch)
}

// Components lists the artifacts of a node in install order: the Kubernetes binaries of the
// given version, then containerd, runc, crictl and the CNI plugins at the versions the version
// matrix names for that Kubernetes minor. `ksboot bundle` packs the same list.
func Components(kubernetesVersion, arch string) []Artifact {
	m := versions.MustLookup(kubernetesVersion)
	return []Artifact{
		{Name: Kubeadm, Version: kubernetesVersion, Arch: arch, Kind: KindBinary},
		{Name: Kubelet, Version: kubernetesVersion, Arch: arch, Kind: KindBinary},
		{Name: Kubectl, Version: kubernetesVersion, Arch: arch, Kind: KindBinary},
		{Name: Containerd, Version: m.Containerd, Arch: arch, Kind: KindTarball},
		{Name: Runc, Version: m.Runc, Arch: arch, Kind: KindBinary},
		{Name: Crictl, Version: m.Crictl, Arch: arch, Kind: KindTarball},
		{Name: CNIPlugins, Version: m.CNIPlugins, Arch: arch, Kind: KindTarball},
	}
}

// Source yields artifacts. HTTPMirror and Bundle implement it; tests wrap them.
type Source interface {
	// Open starts reading an artifact. The Blob carries the sha256 the source promises; the
	// caller must check it (Fetch does).
	Open(ctx context.Context, a Artifact) (*Blob, error)
	// Location is where the artifact comes from (a URL or a path in the bundle), for messages.
	Location(a Artifact) string
	// Files lists the files of a kind that the source holds locally: packages and image
	// archives of a bundle. A mirror has none.
	Files(kind Kind) []Entry
	// LocalPath checks a listed file against its sha256 and returns its path on this machine,
	// for commands that read it in place (apt-get, rpm, ctr).
	LocalPath(e Entry) (string, error)
	// String names the source for messages ("mirror http://10.0.0.5/k8s",
	// "bundle /run/ksboot/bundle").
	String() string
}

// Blob is an artifact being read.
type Blob struct {
	Body io.ReadCloser
	// SHA256 is the expected digest, lowercase hex.
	SHA256 string
	// Location is the URL or bundle path actually read.
	Location string
}

// Errors a caller may act on (errors.Is).
var (
	// ErrChecksum: the content does not match the published sha256.
	ErrChecksum = errors.New("sha256 mismatch")
	// ErrNotFound: the source does not have the artifact (HTTP 404, not in the manifest).
	ErrNotFound = errors.New("not found")
	// ErrUnreachable: the source did not answer (connection refused, timeout, DNS).
	ErrUnreachable = errors.New("unreachable")
)

// TempPrefix starts the name of every temporary file this package and the install phase
// create next to their destinations, so that leftovers of a killed run can be found and removed
// without touching anyone else's files.
const TempPrefix = ".ksboot-tmp-"

// Fetch copies an artifact from src into a new file in dir (a host directory) and returns the
// file's path and sha256. The content is hashed while it is written and the file is synced
// before it is returned; on any error, a mismatch included, the file is removed, so a caller
// that renames the result into place never installs a partial or wrong file. Errors name the
// artifact and where it came from: "installing kubeadm v1.37.2 (linux/amd64) from <url>: …".
func Fetch(ctx context.Context, src Source, a Artifact, dir string) (path, sum string, err error) {
	where := src.Location(a)
	defer func() {
		if err != nil {
			err = fmt.Errorf("installing %s from %s: %w", a, where, err)
		}
	}()
	blob, err := src.Open(ctx, a)
	if err != nil {
		return "", "", err
	}
	defer blob.Body.Close()
	if blob.Location != "" {
		where = blob.Location
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	f, err := os.CreateTemp(dir, TempPrefix+a.Name+"-*")
	if err != nil {
		return "", "", err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), contextReader{ctx, blob.Body}); err != nil {
		return "", "", fmt.Errorf("reading: %w", err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if want := strings.ToLower(blob.SHA256); got != want {
		return "", "", fmt.Errorf("%w: got %s, want %s", ErrChecksum, got, want)
	}
	if err := f.Sync(); err != nil {
		return "", "", err
	}
	if err := f.Close(); err != nil {
		return "", "", err
	}
	keep = true
	return f.Name(), got, nil
}

// FileSHA256 hashes a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// contextReader stops a copy when the context ends, so a cancelled agent does not finish a
// long download from a bundle on a slow disk first (HTTP bodies stop on their own).
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// SameVersion compares release versions, ignoring a leading "v" (containerd's tarball names
// and `runc --version` drop it, the tags keep it).
func SameVersion(a, b string) bool {
	return strings.TrimPrefix(a, "v") == strings.TrimPrefix(b, "v")
}
