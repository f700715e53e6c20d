// Package joinorder makes control planes join one at a time, in the order of
// spec.roleGroups.control-plane, whatever the discovery mode (mDNS, a static endpoint, a
// load balancer, kube-vip or haproxy). Concurrent `kubeadm join --control-plane` with stacked
// etcd race in etcd's member add and learner promotion, so control plane k (k ≥ 2) waits,
// right before its join, until every control plane 1..k-1 is
//
//   - a Ready Node of the cluster,
//   - a started, voting (not learner) etcd member that answers a health read, and
//   - a healthy API server: /readyz at <its address>:<endpoint port> answers, or its mirror
//     pod kube-apiserver-<node> is Ready.
//
// It sees that without SSH and without any file on the other nodes: control-plane seeds carry
// the cluster CA and the etcd CA with their keys, so Wait mints two short-lived client
// certificates in memory (one in system:masters signed by the cluster CA for the API, one
// signed by the etcd CA with the common name kubeadm gives its etcd health-check client).
// They are never written or logged. The API is read through the endpoint the discover phase
// verified; etcd (port 2379) and /readyz are asked at the earlier control planes' static
// addresses from the cluster file. Every call is bounded in time, and the wait as a whole.
//
// The wait only reads, so it is idempotent: a control plane that reboots in the middle of its
// join waits again, never for itself (k waits for 1..k-1 only). When it is itself an etcd
// member already (its join was cut short after kubeadm added the member), its own etcd, which
// the kubelet restarts from the static pod, counts toward the quorum the earlier members need
// to answer; the wait then holds the agent's `kubeadm reset` back until the quorum is there
// again instead of letting it wipe a member the cluster still counts on.
package joinorder
