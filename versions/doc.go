// Package versions is ksboot's version matrix: for every Kubernetes minor release ksboot
// installs, the kubeadm configuration API it renders, the container runtime, runc, crictl,
// CNI plugins, pause image, Calico and Flannel releases a node gets, and how the kubelet of that
// minor treats cgroup v1; and, per Kubernetes release read, the etcd and CoreDNS tags kubeadm
// deploys.
//
// It is data, in one place, with no dependencies: `validate` refuses a version outside it,
// `create config` picks its defaults from it, and the kubeadm renderer, the install phase, the
// addons phase, `ksboot bundle` and the documentation table (docs/versions.md, checked by a
// test) all read it. A question such as "which containerd for v1.26?" has one answer, here.
//
// The rows follow upstream's own support statements: containerd's Kubernetes support table
// (RELEASES.md), crictl's minor matching the Kubernetes minor (cri-tools' README), Calico's
// per-release system requirements, and the constants of each kubeadm release
// (cmd/kubeadm/app/constants). Which of them a real kubeadm or a real cluster has judged here
// is recorded per release in Judged.
package versions
