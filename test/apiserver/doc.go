// Package apiserver starts a real etcd and kube-apiserver on loopback for tests of client-go
// code: server-side apply, CRDs, status subresources, RBAC, Helm releases, all judged by the
// same API server a cluster runs, not by a fake clientset.
//
// The binaries come from test/k8sbin (built once from their Go modules and cached outside the
// repository). Certificates are made from the cluster CA that cluster.NewSecrets creates for
// seeds: a serving certificate for 127.0.0.1 and localhost signed by it, a client
// certificate in system:masters (kubeadm's admin.conf is bound through RBAC only after
// `kubeadm init`, which never runs here) and the service-account key pair. etcd serves its
// clients over TLS as kubeadm's stacked etcd does: a serving certificate for 127.0.0.1 and
// client certificates (the API server's, the harness's health check), all signed by the
// secrets' etcd CA, so tests can reach Server.EtcdURL with a client certificate minted from
// Server.Secrets. Ports are free loopback ports picked at start; data lives in t.TempDir().
//
// There is no controller-manager and no scheduler: Deployments create no pods and pods stay
// Pending. Tests use that on purpose (waits that must time out with a diagnosis) and set node
// and pod status themselves through the status subresource.
//
// Start skips the test under -short, and when k8sbin cannot provide the binaries, with the
// reason. Both processes run in their own process groups and are stopped in t.Cleanup, also
// when the test fails; they die with the test binary if it is killed (Pdeathsig).
//
// Only tests import this package.
package apiserver
