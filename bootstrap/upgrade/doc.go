// Package upgrade rolls a cluster to the next Kubernetes release through the cluster itself,
// without a task machine.
//
//   - Admin side (`ksboot upgrade --to`, with a kubeconfig): Request checks the version skew
//     rules (a release of the version matrix; the control plane's minor or the next one; no
//     kubelet newer than the target or more than one minor behind it), records the plan in the
//     ConfigMap kube-system/ksboot-upgrade (target, order: control planes oldest first, then
//     workers), and grants system:nodes get and update on exactly that ConfigMap: the nodes
//     report into it and take turns through its "holder" key (a kubelet may write no Lease
//     but its own, under the NodeRestriction admission plugin). Status reads every node's version and
//     step for `ksboot upgrade status` and `--wait`.
//   - Node side (`ksboot agent serve` calls Follow each round with its kubelet's identity): a
//     node whose turn it is (every node before it in the order done) takes the turn and goes
//     through kubeadm's steps for its role, reporting each in the plan (a kubelet may read
//     only its own Node, so the nodes learn each other's progress there): new kubeadm, kubelet and kubectl from the node's artifact source; `kubeadm
//     upgrade apply` on the first control plane, `kubeadm upgrade node` elsewhere; drain; the
//     kubelet restarted on the new binary and awaited at the target version; uncordon.
//     A kubelet's identity may not evict pods or cordon its Node, so control planes drain and
//     uncordon themselves with admin.conf and answer the workers' requests
//     (ksboot.dev/upgrade-request, echoed in ksboot.dev/upgrade-answer when done).
package upgrade
