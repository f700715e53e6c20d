package addons

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
)

// Artifact is a third-party file ksboot does not generate: where upstream publishes it and the
// SHA-256 it must have. The digest is pinned in ksboot, so a mirror, a bundle or a man in the
// middle can make the step fail but never make it apply something else.
type Artifact struct {
	// Name is the file name in the offline bundle's manifests/ directory.
	Name string
	// URL is upstream's address.
	URL string
	// SHA256 is the hex digest of the file.
	SHA256 string
}

// CalicoVersion is the Calico release ksboot deploys.
const CalicoVersion = "v3.32.1"

// CalicoManifest is upstream's calico.yaml (Calico with the Kubernetes API datastore, no
// operator) of CalicoVersion. It is too big to write as Go data and changes with every
// release, so it is fetched and verified rather than committed.
var CalicoManifest = Artifact{
	Name:   "calico-" + CalicoVersion + ".yaml",
	URL:    "https://raw.githubusercontent.com/projectcalico/calico/" + CalicoVersion + "/manifests/calico.yaml",
	SHA256: "a1df919d9721cf667accdc3e72848911b0cb25cfab7d2478ad0c996302c95744",
}

// maxManifestSize bounds a download: calico.yaml is well under a megabyte with its CRDs; a
// server sending more is not sending the pinned file.
const maxManifestSize = 32 << 20

// ManifestSource yields the bytes of an artifact. Fetch verifies nothing; Load does, so every
// source is held to the pinned digest.
type ManifestSource interface {
	Fetch(ctx context.Context, a Artifact) ([]byte, error)
	// Describe says where the source looks, for messages ("https://mirror/...", "bundle /mnt").
	Describe(a Artifact) string
}

// HTTPSource fetches artifacts over HTTP(S): from upstream's URL, or with Mirror set from
// "<Mirror>/<upstream host>/<upstream path>", so one mirror holds files of several upstream
// sites without collisions.
type HTTPSource struct {
	// Mirror is a base URL; empty means upstream.
	Mirror string
	// Client is the HTTP client; nil means one with a two-minute timeout.
	Client *http.Client
}

// URL is where the source fetches the artifact from.
func (s HTTPSource) URL(a Artifact) (string, error) {
	if s.Mirror == "" {
		return a.URL, nil
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		return "", fmt.Errorf("parsing %s: %w", a.URL, err)
	}
	return strings.TrimSuffix(s.Mirror, "/") + "/" + u.Host + u.EscapedPath(), nil
}

// Describe implements ManifestSource.
func (s HTTPSource) Describe(a Artifact) string {
	u, err := s.URL(a)
	if err != nil {
		return a.URL
	}
	return u
}

// Fetch implements ManifestSource.
func (s HTTPSource) Fetch(ctx context.Context, a Artifact) ([]byte, error) {
	u, err := s.URL(a)
	if err != nil {
		return nil, err
	}
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("fetching %s: larger than %d bytes", u, maxManifestSize)
	}
	return data, nil
}

// DirSource reads artifacts from the offline bundle: "<Dir>/manifests/<Name>".
type DirSource struct {
	Dir string
}

// Describe implements ManifestSource.
func (s DirSource) Describe(a Artifact) string { return filepath.Join(s.Dir, "manifests", a.Name) }

// Fetch implements ManifestSource.
func (s DirSource) Fetch(_ context.Context, a Artifact) ([]byte, error) {
	p := s.Describe(a)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s from the bundle: %w", a.Name, err)
	}
	return data, nil
}

// ErrDigestMismatch is wrapped when an artifact does not have its pinned SHA-256.
var ErrDigestMismatch = errors.New("SHA-256 mismatch")

// Load fetches an artifact from the source and verifies its pinned digest.
func Load(ctx context.Context, src ManifestSource, a Artifact) ([]byte, error) {
	if a.SHA256 == "" {
		return nil, fmt.Errorf("artifact %s has no pinned SHA-256; refusing to use it unverified", a.Name)
	}
	data, err := src.Fetch(ctx, a)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, a.SHA256) {
		return nil, fmt.Errorf("%s from %s: %w: got %s, want %s (a corrupt download, or a different release than the one ksboot pins)",
			a.Name, src.Describe(a), ErrDigestMismatch, got, a.SHA256)
	}
	return data, nil
}

// CalicoIPAutodetection is the IP_AUTODETECTION_METHOD ksboot gives calico-node: the first
// InternalIP of the node as the kubelet registered it. The kubeadm step passes a host's static
// address as the kubelet's --node-ip, so on a machine with several interfaces (VMs often have
// a NAT interface besides the cluster network, with the same address on every VM) Calico
// peers and tunnels over the address the rest of the cluster knows the node by. Upstream's
// default, first-found, takes the first interface it sees instead. KubeKey gets the same
// effect with can-reach=$(NODEIP).
const CalicoIPAutodetection = "kubernetes-internal-ip"

// Calico loads the Calico manifest from src, verifies it, and patches it for the cluster: the
// IPv4 pool is the cluster's pod CIDR (CALICO_IPV4POOL_CIDR on the calico-node container;
// upstream ships it as a commented-out line, so it is added, and without it Calico falls back
// to 192.168.0.0/16, which would not match kubeadm's podSubnet), the node address is detected
// as CalicoIPAutodetection says, and every image, of init containers too, is renamed for the
// cluster's registry. Other objects, the CustomResourceDefinitions among them, are left as
// they are. Patching works on parsed objects, not text, so a reformatted manifest cannot
// silently escape it.
func Calico(ctx context.Context, c *cluster.Cluster, src ManifestSource, a Artifact) ([]*unstructured.Unstructured, error) {
	data, err := Load(ctx, src, a)
	if err != nil {
		return nil, fmt.Errorf("loading the Calico manifest: %w", err)
	}
	objs, err := kube.ParseYAML(a.Name, data)
	if err != nil {
		return nil, fmt.Errorf("parsing the Calico manifest: %w", err)
	}
	found := false
	for _, u := range objs {
		if err := rewriteImages(u, c.Spec.Registry); err != nil {
			return nil, fmt.Errorf("patching %s in %s: %w", kube.Describe(u), a.Name, err)
		}
		if u.GetKind() == "DaemonSet" && u.GetName() == "calico-node" {
			for _, e := range [][2]string{
				{"CALICO_IPV4POOL_CIDR", c.Spec.Network.KubePodsCIDR},
				{"IP_AUTODETECTION_METHOD", CalicoIPAutodetection},
			} {
				if err := setContainerEnv(u, "calico-node", e[0], e[1]); err != nil {
					return nil, fmt.Errorf("patching %s in %s: %w", kube.Describe(u), a.Name, err)
				}
			}
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("patching %s: no DaemonSet calico-node with a container calico-node to set the pod CIDR on", a.Name)
	}
	return objs, nil
}

// rewriteImages renames the image of every container and init container of a workload.
func rewriteImages(u *unstructured.Unstructured, reg cluster.Registry) error {
	path, ok := kube.PodSpecPaths[u.GetKind()]
	if !ok {
		return nil
	}
	for _, field := range []string{"initContainers", "containers"} {
		cs, found, err := unstructured.NestedSlice(u.Object, slices.Concat(path, []string{field})...)
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		for i, c := range cs {
			m, ok := c.(map[string]any)
			if !ok {
				return fmt.Errorf("%s[%d] is not an object", field, i)
			}
			if img, ok := m["image"].(string); ok {
				m["image"] = Image(reg, img)
			}
		}
		if err := unstructured.SetNestedSlice(u.Object, cs, slices.Concat(path, []string{field})...); err != nil {
			return err
		}
	}
	return nil
}

// setContainerEnv sets (replacing or adding) an environment variable of a named container.
func setContainerEnv(u *unstructured.Unstructured, container, name, value string) error {
	path := slices.Concat(kube.PodSpecPaths[u.GetKind()], []string{"containers"})
	cs, _, err := unstructured.NestedSlice(u.Object, path...)
	if err != nil {
		return err
	}
	for i, c := range cs {
		m, ok := c.(map[string]any)
		if !ok || m["name"] != container {
			continue
		}
		env, _ := m["env"].([]any)
		replaced := false
		for j, e := range env {
			if em, ok := e.(map[string]any); ok && em["name"] == name {
				env[j] = map[string]any{"name": name, "value": value}
				replaced = true
			}
		}
		if !replaced {
			env = append(env, map[string]any{"name": name, "value": value})
		}
		m["env"] = env
		cs[i] = m
		return unstructured.SetNestedSlice(u.Object, cs, path...)
	}
	return fmt.Errorf("no container %s", container)
}
