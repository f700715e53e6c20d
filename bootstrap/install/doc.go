// Package install is the agent's install phase: it makes a node ready for kubeadm. In order,
// and each step idempotent:
//
//  1. Packages: socat, conntrack, ebtables, ipset, curl, openssl and tar through the
//     distribution's package manager (apt-get, dnf/yum, zypper), or from the offline bundle's
//     packages for this distribution; installed packages are left alone.
//  2. Binaries: kubeadm, kubelet and kubectl of the cluster's Kubernetes version, containerd,
//     runc, crictl and the CNI plugins at their pinned versions, from one artifact source
//     (package artifacts: an HTTP mirror or the offline bundle). Every file is fetched to a
//     temporary file beside its destination, verified against its sha256 and renamed into
//     place; a record per artifact in /var/lib/ksboot/install lets a later run skip what is
//     in place without touching the network.
//  3. Configure: containerd's config.toml and registry hosts files, the containerd and kubelet
//     units with kubeadm's drop-in and crictl.yaml (package runtime renders them), then
//     systemctl daemon-reload, enable containerd and kubelet, restart containerd.
//  4. ImportImages: the bundle's image archives into containerd's k8s.io namespace.
//  5. Verify: every binary reports the version that was asked for.
//
// Binaries land in /usr/local/bin (runc in /usr/local/sbin, CNI plugins in /opt/cni/bin), the
// layout of the upstream tarballs and of the Kubernetes documentation's install without a
// package manager; the units are installed in /etc/systemd/system so that they win over any
// distribution package of the same name.
//
// A failed step returns a one-line error naming the artifact and its source, for example
// "installing kubeadm v1.37.2 (linux/amd64) from https://dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubeadm:
// sha256 mismatch: got …, want …", with advice attached (workflow.WithHint). Nothing is left
// half installed: a partial download is never renamed into place, a tarball's files are all
// staged before any is renamed, and temporary files of a killed run are removed by the next.
//
// Every file goes through host.Root and every command through host.Runner, so tests and dry
// runs execute the phase against a temporary directory.
package install
