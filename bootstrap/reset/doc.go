// Package reset undoes what the agent did on a node (`ksboot agent reset`), as `kubeadm reset`
// and KubeKey's `kk delete node` do, so that the machine can boot a seed again and bootstrap
// from scratch. Run performs, in this order:
//
//  1. bootstrap unit: stops ksboot-bootstrap.service (so that it cannot restart in the middle of
//     the reset) and ksboot-announce.service (the node leaves `ksboot watch`);
//  2. kubeadm reset: `kubeadm reset -f --cri-socket unix:///run/containerd/containerd.sock` when
//     kubeadm is installed in /usr/local/bin and left any state; on a control plane it also
//     removes the node's own etcd member from the cluster, which is why it runs while etcd
//     still answers, before any file is removed;
//  3. kubelet: stops and disables kubelet.service (the next install phase enables it again);
//  4. network: what kubeadm reset leaves behind — /etc/cni/net.d/*, /var/lib/cni,
//     /var/lib/calico, the links cni0, flannel.1, kube-ipvs0, nodelocaldns, tunl0 and
//     vxlan.calico, the iptables filter, nat and mangle rules and the IPVS table;
//  5. kubernetes state: /etc/kubernetes, /var/lib/kubelet, /var/lib/etcd and root's kubeconfig;
//  6. ksboot state: /var/lib/ksboot (except the install records) and /etc/ksboot, whose
//     node.yaml and kubeadm.yaml hold the bootstrap token;
//  7. cloud-init: `cloud-init clean`, so that the next boot applies the attached seed again even
//     when it is the same seed (same instance-id).
//
// Every step is idempotent and reports done, nothing to do or failed: a second run on a reset
// machine runs no destructive command and says that nothing was left. A failed step does not
// stop the later ones; Run then returns an *Error naming every failed step with the command to
// run by hand. Every path is a constant resolved under Options.Root, every command goes through
// Options.Exec, and with a *host.DryRun runner nothing is run or removed: the console says what
// would be. A directory with a mount point below it (a pod volume kubeadm reset could not
// unmount) is never removed.
//
// Kept on purpose: containerd, its configuration and its images, the installed binaries
// (/usr/local/bin, /usr/local/sbin, /opt/cni/bin), their units and the install records in
// /var/lib/ksboot/install, so that the next bootstrap re-uses them without downloading anything.
// The reset does not talk to the cluster: a worker's Node object stays until someone runs
// `kubectl delete node`.
package reset
