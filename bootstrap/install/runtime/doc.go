// Package runtime renders the container runtime's files for a node: containerd 2.x's
// /etc/containerd/config.toml (config version 3), registry hosts files under
// /etc/containerd/certs.d, the containerd and kubelet systemd units with kubeadm's kubelet
// drop-in, and /etc/crictl.yaml. It only renders (Files returns paths, contents and modes);
// the install phase writes them through host.Root and starts the services.
//
// What was checked against containerd v2.4.2's source (module github.com/containerd/containerd/v2):
//
//   - internal/cri/config: the CRI image service reads pinned_images (map, key "sandbox"),
//     registry.config_path and the deprecated registry.configs.<host>.auth (username,
//     password), which is still consulted for credentials (internal/cri/server/images) and is
//     announced for removal only in v2.7; config_path may be combined with configs (only
//     mirrors is an error);
//   - the runtime service's containerd.runtimes.runc.options is runc's option map, where
//     SystemdCgroup lives (default false);
//   - plugin IDs io.containerd.cri.v1.images and io.containerd.cri.v1.runtime
//     (docs/cri/config.md); containerd 2.4 reads config version 3 and migrates it in memory
//     (version 4 only moved server settings ksboot does not set);
//   - core/remotes/docker/config: hosts.toml's server, host.<url>.capabilities and
//     skip_verify; a server written http://host:port with skip_verify is tried over HTTPS
//     without verification first and then over HTTP; a docker.io file needs an explicit
//     server = "https://registry-1.docker.io", since "https://docker.io" is taken literally;
//   - containerd.service at the repository's top, reproduced in ContainerdUnit.
//
// The integration tests (skipped with -short) feed the rendered files to containerd v2.4.2
// itself: `containerd config dump` must load config.toml without "unknown key" warnings and
// show the settings, and a small program built on containerd's hosts code must resolve the
// hosts files to the expected endpoints.
package runtime
