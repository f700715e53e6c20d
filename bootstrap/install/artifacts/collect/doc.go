// Package collect gathers, on a machine with network access, everything the nodes of a cluster
// install from, into a directory that is an offline bundle (see package artifacts for the
// format): `ksboot bundle -f cluster.yaml` runs it and packs the directory into the KSBUNDLE
// ISO.
//
// For the cluster's Kubernetes version and each architecture asked for it collects
//
//   - kubeadm, kubelet, kubectl, containerd, runc, crictl and the CNI plugins from their release
//     URLs (or the cluster's mirror), each checked against the sha256 published next to it;
//   - Calico's manifest, when the cluster uses Calico, checked against the digest ksboot pins;
//   - the ks-core chart of KubeSphere v4 from the configured chart source;
//   - the container images kubeadm (its version table), the CNI, OpenEBS LocalPV and KubeSphere
//     need, pulled with go-containerregistry and written as one OCI archive per group and
//     architecture, images/<group>-<arch>.tar, under the names the nodes ask for (after the
//     cluster's registry rewriting); for KubeSphere that is the ks-installer image (v3) or the
//     images of the rendered ks-core chart (v4: its workloads, its hook Jobs, and the kubectl,
//     node shell and Helm executor images its kubesphere-config names), not the images those
//     later pull (v3's components, v4's extensions);
//   - for each OS asked for, the required OS packages with their dependencies, downloaded by the
//     distribution's package manager (apt-get, against an empty package status so that every
//     dependency is included), which only works on a machine of that distribution and release.
//
// It lives outside package artifacts because package image (which packs the bundle and writes
// image archives) imports artifacts.
//
// # Resuming
//
// A run that is interrupted resumes without downloading again what it already verified: a
// binary whose file matches the published sha256 is kept (one small request for the checksum);
// Calico's manifest is checked against its pinned digest; an image archive or chart is kept when
// the state file (.bundle-state.json in the work directory, rewritten atomically after every
// step) or the previous run's manifest.json records it with the same references and the file
// still has the recorded sha256; packages already in packages/<os>/ are handed to apt-get, which
// checks them against its index and fetches only what is missing. Leftover temporary files are
// removed at the start. A finished run writes manifest.json and removes the state file, so the
// work directory is then exactly a bundle directory.
package collect
