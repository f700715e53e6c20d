// Package artifacts is where a node gets its Kubernetes binaries, container runtime, OS packages
// and image archives from: one Source interface with two implementations, an HTTP mirror and an
// offline bundle. Whatever the source, every file is checked against its sha256 before anyone
// uses it (Fetch, Source.LocalPath), so a truncated download, a corrupted ISO or a wrong file on
// a mirror never reaches /usr/local/bin.
//
// # HTTP mirror
//
// HTTPMirror downloads from the upstream release sites by default:
//
//	kubeadm, kubelet, kubectl  https://dl.k8s.io/release/<v>/bin/linux/<arch>/<name>          (+ .sha256)
//	containerd                 https://github.com/containerd/containerd/releases/download/<v>/containerd-<v without "v">-linux-<arch>.tar.gz (+ .sha256sum)
//	runc                       https://github.com/opencontainers/runc/releases/download/<v>/runc.<arch>  (runc.sha256sum in the same directory)
//	crictl                     https://github.com/kubernetes-sigs/cri-tools/releases/download/<v>/crictl-<v>-linux-<arch>.tar.gz (+ .sha256)
//	cni-plugins                https://github.com/containernetworking/plugins/releases/download/<v>/cni-plugins-linux-<arch>-<v>.tgz (+ .sha256)
//
// The expected sha256 is the one each project publishes next to the file (a bare digest or
// sha256sum lines; the line naming the file is used).
//
// spec.artifacts.mirror is a base URL laid out like those sites: the path of every upstream URL
// (file and checksum) is appended to the base, so a mirror made with `wget -x` of the URLs above,
// or a caching proxy that keeps paths, works as is. For example, with mirror
// http://10.0.0.5/k8s, kubeadm comes from
// http://10.0.0.5/k8s/release/v1.37.2/bin/linux/amd64/kubeadm and containerd from
// http://10.0.0.5/k8s/containerd/containerd/releases/download/v2.4.2/containerd-2.4.2-linux-amd64.tar.gz.
//
// zone: cn (and no mirror) uses the buckets KubeKey uses for KKZONE=cn, so KubeKey users in
// mainland China get the same download locations: kubernetes-release.pek3b.qingstor.com for
// Kubernetes, containerd, runc and crictl, and containernetworking.pek3b.qingstor.com for the
// CNI plugins. Their paths follow KubeKey's (crictl under /cri-tools/…, the CNI plugins under
// /plugins/…); the checksum files are expected next to each file under the same suffix as
// upstream.
//
// A checksum fetched from the same place as the file protects against corruption and
// truncation, not against a malicious mirror; an operator who does not trust the network uses
// a bundle, whose manifest travels with the seed-building machine's checks.
//
// # Offline bundle
//
// A bundle is a directory, or an ISO9660 image (usually a second CD-ROM with volume label
// KSBUNDLE), that holds manifest.json at its top and the files it lists. spec.artifacts.bundle
// names it: a directory on the node, an ISO file or block device on the node (mounted read-only
// at /run/ksboot/bundle), or "label:<LABEL>" for a volume found with
// `blkid -t LABEL=<LABEL> -o device`. The manifest is Manifest, encoded as JSON:
//
//	{
//	  "formatVersion": 1,
//	  "kubernetesVersion": "v1.37.2",
//	  "artifacts": [
//	    {"name": "kubeadm", "version": "v1.37.2", "arch": "amd64", "kind": "binary",
//	     "path": "bin/linux/amd64/kubeadm", "sha256": "<64 hex>"},
//	    {"name": "containerd", "version": "v2.4.2", "arch": "amd64", "kind": "tarball",
//	     "path": "containerd/containerd-2.4.2-linux-amd64.tar.gz", "sha256": "<64 hex>"},
//	    {"name": "socat", "version": "1.7.4.4-2", "arch": "amd64", "kind": "deb", "os": "debian-12",
//	     "path": "packages/debian-12/socat_1.7.4.4-2_amd64.deb", "sha256": "<64 hex>"},
//	    {"name": "kubernetes", "version": "v1.37.2", "arch": "amd64", "kind": "image",
//	     "path": "images/kubernetes-amd64.tar", "sha256": "<64 hex>",
//	     "images": ["registry.k8s.io/kube-apiserver:v1.37.2", "registry.k8s.io/pause:3.10.2"]},
//	    {"name": "ks-core", "version": "1.1.4", "kind": "chart",
//	     "path": "charts/ks-core-1.1.4.tgz", "sha256": "<64 hex>"}
//	  ]
//	}
//
// Field by field (Entry):
//
//   - name: the component ("kubeadm", "kubelet", "kubectl", "containerd", "runc", "crictl",
//     "cni-plugins"), the package name for kind deb/rpm (what dpkg-query and rpm -q know it
//     by), or any label for an image archive.
//   - version: the upstream release tag for components ("v1.37.2", "v2.4.2"; a missing or
//     extra leading "v" is tolerated when matching), the package version for deb/rpm.
//   - arch: amd64 or arm64 (Go names, not uname's); empty for files every architecture uses.
//   - kind: binary (one executable), tarball (a .tar.gz release archive: containerd, crictl,
//     cni-plugins), image (an OCI or docker image archive for `ctr images import`), deb, rpm,
//     chart (a Helm chart archive under charts/: KubeSphere v4's ks-core), manifest (a
//     third-party Kubernetes manifest under manifests/: Calico's).
//   - os: for deb/rpm only, the distribution the package is built for as "<ID>-<VERSION_ID>"
//     or "<ID>-<major>" from os-release ("debian-12", "ubuntu-22.04", "rocky-9"); empty
//     means any distribution of the package's family.
//   - path: slash-separated, relative to the bundle's top, no "..".
//   - sha256: lowercase hex digest of the file.
//   - images: for kind image, the references the archive holds, exactly as `ctr images ls -q`
//     prints them after import; they make the import idempotent.
//
// `ksboot bundle` writes the manifest with these types (Manifest.Marshal) and the agent reads it
// with ParseManifest, which rejects unknown fields, unknown kinds, bad digests and unsafe
// paths, so the two sides cannot drift apart silently.
package artifacts
