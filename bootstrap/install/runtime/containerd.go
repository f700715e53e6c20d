package runtime

import (
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ksboot/ksboot/cluster"
)

// Paths of the files this package renders, on the node.
const (
	ContainerdConfigPath = "/etc/containerd/config.toml"
	// ContainerdDropInDir holds an administrator's additions, imported by config.toml and
	// never written by ksboot.
	ContainerdDropInDir = "/etc/containerd/conf.d"
	CertsDir            = "/etc/containerd/certs.d"
	ContainerdUnitPath  = "/etc/systemd/system/containerd.service"
	KubeletUnitPath     = "/etc/systemd/system/kubelet.service"
	KubeadmDropInPath   = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
	CrictlConfigPath    = "/etc/crictl.yaml"
	// Endpoint is containerd's CRI socket, for crictl and kubeadm's criSocket.
	Endpoint = "unix:///run/containerd/containerd.sock"
	// BinDir is where the binaries of containerd, crictl and Kubernetes go; the units name it.
	BinDir = "/usr/local/bin"
)

// ManagedHeader starts every hosts.toml ksboot writes, so that a later run can remove the ones
// it no longer wants without touching an administrator's own.
const ManagedHeader = "# Managed by ksboot"

// Params is what containerd's configuration depends on.
type Params struct {
	// SandboxImage is the pause image, exactly as kubeadm names it for the cluster's version
	// and image repository (install.PauseImage): if the two differ, containerd pulls a second
	// pause image, which an offline node cannot do.
	SandboxImage string
	// Registry is the cluster's spec.registry.
	Registry cluster.Registry
	// ContainerdVersion is the containerd release the node runs (the version matrix's for
	// the cluster's Kubernetes minor). It picks the configuration format: version 2 for
	// containerd 1.x, version 3 for 2.x. Empty means 2.x.
	ContainerdVersion string
}

// File is one file to write.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// Files renders every runtime file: containerd's config.toml, one hosts.toml per configured
// registry, the containerd and kubelet units, kubeadm's kubelet drop-in and crictl's config,
// in a stable order.
func Files(p Params) ([]File, error) {
	if p.SandboxImage == "" {
		return nil, fmt.Errorf("rendering containerd configuration: no sandbox image")
	}
	cfg, mode := ContainerdConfig(p)
	files := []File{{Path: ContainerdConfigPath, Data: cfg, Mode: mode}}
	hosts, err := HostsFiles(p.Registry)
	if err != nil {
		return nil, err
	}
	files = append(files, hosts...)
	crictl, err := CrictlConfig()
	if err != nil {
		return nil, err
	}
	files = append(files,
		File{Path: ContainerdUnitPath, Data: []byte(ContainerdUnit), Mode: 0o644},
		File{Path: KubeletUnitPath, Data: []byte(KubeletUnit), Mode: 0o644},
		File{Path: KubeadmDropInPath, Data: []byte(KubeadmDropIn), Mode: 0o644},
		File{Path: CrictlConfigPath, Data: crictl, Mode: 0o644},
	)
	return files, nil
}

// ContainerdConfig renders /etc/containerd/config.toml for the node's containerd, setting only
// what ksboot decides and leaving containerd's defaults for the rest:
//
//   - the runc runtime uses the systemd cgroup driver (SystemdCgroup = true), matching the
//     kubelet's cgroupDriver: systemd that kubeadm sets by default;
//   - the sandbox (pause) image is pinned to kubeadm's;
//   - registry hosts come from config_path (certs.d/<host>/hosts.toml), containerd's
//     supported mechanism since the mirrors/configs tables were deprecated;
//   - registry credentials go in registry.configs.<host>.auth, deprecated but still the only
//     way in containerd to give the CRI plugin credentials for pulls the kubelet makes
//     without an imagePullSecret (containerd's docs/cri/registry.md). With credentials the
//     file is 0600, since it then holds passwords.
//
// containerd 2.x reads config version 3, where the CRI plugin is split into
// io.containerd.cri.v1.images and io.containerd.cri.v1.runtime (2.3 and later migrate it in
// memory at startup). containerd 1.6 and 1.7, which the version matrix gives Kubernetes below
// v1.30, do not read version 3: they get version 2, with everything under the single
// io.containerd.grpc.v1.cri plugin and the sandbox image as its sandbox_image.
func ContainerdConfig(p Params) ([]byte, fs.FileMode) {
	// Where each setting lives in the two formats.
	type layout struct {
		version         int
		images, runtime string
		sandboxTable    []string
		sandboxKey      string
	}
	l := layout{version: 3, images: "io.containerd.cri.v1.images", runtime: "io.containerd.cri.v1.runtime",
		sandboxTable: []string{"plugins", "io.containerd.cri.v1.images", "pinned_images"}, sandboxKey: "sandbox"}
	if containerd1(p.ContainerdVersion) {
		const cri = "io.containerd.grpc.v1.cri"
		l = layout{version: 2, images: cri, runtime: cri,
			sandboxTable: []string{"plugins", cri}, sandboxKey: "sandbox_image"}
	}
	var w tomlWriter
	w.comment(
		"Written by ksboot; changes here are overwritten when the node is reinstalled.",
		"Put additions in "+ContainerdDropInDir+"/*.toml, which this file imports.",
	)
	w.kv(false, "version", l.version)
	w.kv(false, "imports", []string{ContainerdDropInDir + "/*.toml"})

	w.table(l.sandboxTable...)
	w.kv(true, l.sandboxKey, p.SandboxImage)

	w.table("plugins", l.images, "registry")
	w.kv(true, "config_path", CertsDir)

	mode := fs.FileMode(0o644)
	for _, host := range sortedKeys(p.Registry.Auths) {
		a := p.Registry.Auths[host]
		if a.Username == "" && a.Password == "" {
			continue
		}
		w.table("plugins", l.images, "registry", "configs", authHost(host), "auth")
		w.kv(true, "username", a.Username)
		w.kv(true, "password", a.Password)
		mode = 0o600
	}

	w.table("plugins", l.runtime, "containerd", "runtimes", "runc")
	w.kv(true, "runtime_type", "io.containerd.runc.v2")
	w.table("plugins", l.runtime, "containerd", "runtimes", "runc", "options")
	w.kv(true, "SystemdCgroup", true)
	return []byte(w.String()), mode
}

// containerd1 reports whether a containerd release is 1.x ("v1.7.35"); empty or unreadable
// means the current 2.x.
func containerd1(version string) bool {
	return strings.HasPrefix(strings.TrimPrefix(version, "v"), "1.")
}

// hostsFile is one certs.d/<namespace>/hosts.toml.
type hostsFile struct {
	namespace  string // registry host[:port] the file configures
	server     string // the registry itself, tried after the hosts
	skipVerify bool   // for the server
	hosts      []hostEntry
}

type hostEntry struct {
	url          string
	capabilities []string
	skipVerify   bool
}

// HostsFiles renders certs.d/<host>/hosts.toml for the cluster's registries:
//
//   - registryMirrors are mirrors of Docker Hub (KubeKey's and Docker's meaning): docker.io's
//     file lists them, in order, for pull and resolve, with Docker Hub itself as the fallback;
//   - every insecureRegistries entry is its own server as http://<host> with skip_verify, for
//     which containerd tries HTTPS without verifying the certificate first and falls back to
//     plain HTTP (core/remotes/docker/config.ConfigureHosts), so both kinds of "insecure"
//     registry work;
//   - privateRegistry needs a file only when it is written with http:// (and is not listed as
//     insecure already): it is then treated as insecure. An HTTPS private registry is what
//     containerd does without a file; its credentials go in config.toml.
//
// A mirror whose host is also an insecure registry gets skip_verify on its entry.
func HostsFiles(reg cluster.Registry) ([]File, error) {
	insecure := map[string]bool{}
	var insecureHosts []string
	for _, r := range reg.InsecureRegistries {
		if h := registryHost(r); h != "" && !insecure[h] {
			insecure[h] = true
			insecureHosts = append(insecureHosts, h)
		}
	}
	if h := registryHost(reg.PrivateRegistry); h != "" && !insecure[h] && strings.HasPrefix(strings.TrimSpace(reg.PrivateRegistry), "http://") {
		insecure[h] = true
		insecureHosts = append(insecureHosts, h)
	}
	var files []hostsFile
	if len(reg.RegistryMirrors) > 0 {
		f := hostsFile{namespace: "docker.io", server: "https://registry-1.docker.io"}
		for _, m := range reg.RegistryMirrors {
			u, err := url.Parse(strings.TrimSuffix(m, "/"))
			if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				return nil, fmt.Errorf("spec.registry.registryMirrors: %q is not an http(s) URL", m)
			}
			f.hosts = append(f.hosts, hostEntry{url: u.String(), capabilities: []string{"pull", "resolve"}, skipVerify: insecure[u.Host]})
		}
		files = append(files, f)
	}
	for _, h := range insecureHosts {
		if h == "docker.io" {
			continue // Docker Hub is never insecure; a mirror list is the way to redirect it
		}
		files = append(files, hostsFile{namespace: h, server: "http://" + h, skipVerify: true})
	}
	out := make([]File, 0, len(files))
	for _, f := range files {
		if strings.ContainsAny(f.namespace, "/\\") || f.namespace == "." || f.namespace == ".." {
			return nil, fmt.Errorf("registry %q is not a host[:port]", f.namespace)
		}
		var w tomlWriter
		w.comment(strings.TrimPrefix(ManagedHeader, "# ")+": registry hosts for "+f.namespace+".",
			"Rewritten from the cluster file's spec.registry; a file without this header is left alone.")
		w.kv(false, "server", f.server)
		if f.skipVerify {
			w.kv(false, "skip_verify", true)
		}
		for _, h := range f.hosts {
			w.table("host", h.url)
			w.kv(true, "capabilities", h.capabilities)
			if h.skipVerify {
				w.kv(true, "skip_verify", true)
			}
		}
		out = append(out, File{Path: path.Join(CertsDir, f.namespace, "hosts.toml"), Data: []byte(w.String()), Mode: 0o644})
	}
	return out, nil
}

// IsManaged reports whether a hosts.toml was written by ksboot.
func IsManaged(data []byte) bool { return strings.HasPrefix(string(data), ManagedHeader) }

// crictlConfig is /etc/crictl.yaml (cri-tools' config file keys).
type crictlConfig struct {
	RuntimeEndpoint string `yaml:"runtime-endpoint"`
	ImageEndpoint   string `yaml:"image-endpoint"`
	Timeout         int    `yaml:"timeout"`
}

// CrictlConfig points crictl at containerd, so that it does not probe the deprecated dockershim
// and CRI-O sockets first (and warn about each).
func CrictlConfig() ([]byte, error) {
	out, err := yaml.Marshal(crictlConfig{RuntimeEndpoint: Endpoint, ImageEndpoint: Endpoint, Timeout: 10})
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", CrictlConfigPath, err)
	}
	return out, nil
}

// registryHost strips the scheme and any path users write around a registry host
// ("https://reg.example.com/" → "reg.example.com").
func registryHost(r string) string {
	r = strings.TrimSpace(r)
	for _, scheme := range []string{"https://", "http://"} {
		r = strings.TrimPrefix(r, scheme)
	}
	r, _, _ = strings.Cut(r, "/")
	return r
}

// authHost is the host containerd looks credentials up by: the endpoint it connects to. Docker
// Hub's images are named docker.io/… but served by registry-1.docker.io.
func authHost(r string) string {
	switch h := registryHost(r); h {
	case "docker.io", "index.docker.io":
		return "registry-1.docker.io"
	default:
		return h
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
