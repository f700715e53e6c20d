// Package k8sbin hands tests real Kubernetes binaries (kubeadm, kube-apiserver, etcd, …) built
// from their Go modules by hack/build-k8s.sh and cached outside the repository under
// ${XDG_CACHE_HOME:-$HOME/.cache}/ksboot/k8s/<version>/bin/.
//
// No binary can be downloaded on the machines ksboot is developed and tested on, but every
// component is a Go module on the module proxy (see COMPONENTS.md in the shared notes). The
// first call for a missing binary runs the script, which takes minutes for kubeadm and
// kube-apiserver on two cores and seconds afterwards; the script's lock makes concurrent test
// binaries wait for one build instead of racing. A built binary is returned at once, even
// under -short.
//
// A test is skipped, with the reason, when the binary is missing and cannot be built: under
// -short (building is slow), when go, bash or flock is missing, when the test's deadline leaves
// too little time, or when the build fails (typically no module proxy). Setting
// KSBOOT_K8SBIN_REQUIRED=1 turns those skips into failures so that CI cannot pass by skipping.
// Setting KSBOOT_K8SBIN_DIR=DIR uses binaries already in DIR and never builds.
//
// Only tests import this package; it runs the build script with os/exec because that is test
// set-up, not product behaviour.
package k8sbin
