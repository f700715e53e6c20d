// Package loadbalancer is the internal load balancer ksboot deploys for
// spec.controlPlaneEndpoint.internalLoadbalancer, with KubeKey's meaning:
//
//   - haproxy: every node that is not a control plane runs haproxy as a static pod, listening on
//     127.0.0.1:<endpoint port> and forwarding to every control plane's API server, which it
//     health-checks on /healthz over TLS (KubeKey's haproxy.cfg). There lb.kubesphere.local
//     resolves to 127.0.0.1; on the control planes it resolves to the node's own address.
//   - kube-vip: every control plane runs kube-vip as a static pod in ARP mode with leader
//     election; the leader holds the VIP (controlPlaneEndpoint.address) on its interface.
//
// The static pod manifests and haproxy.cfg are generated from typed data (corev1.Pod, a
// haproxy configuration struct) and written by the agent into /etc/kubernetes/manifests and
// /etc/ksboot/haproxy under its root. Files decides which files a node holds before and after
// kubeadm; EndpointIP what lb.kubesphere.local maps to once kubeadm is done; Images what the
// offline bundle carries. The order follows kube-vip's static-pod guide and KubeKey:
//
//   - kube-vip on the first control plane is written before `kubeadm init`, using
//     /etc/kubernetes/super-admin.conf on Kubernetes v1.29 and later (admin.conf has no rights
//     until init has bound its group) and rewritten to admin.conf once init has finished; on the
//     other control planes it is written after `kubeadm join`, with admin.conf.
//   - haproxy is written before `kubeadm join`, so the kubelet kubeadm starts runs it at once,
//     but the join itself goes to the control plane that discovery found (kubeadm's join talks
//     to the endpoint before it starts the kubelet); once haproxy answers with the cluster's CA
//     (WaitLocal), lb.kubesphere.local is switched to 127.0.0.1, as KubeKey does after its join.
//
// kubeadm reset empties /etc/kubernetes/manifests, so the files are placed again before every
// init or join attempt.
package loadbalancer
