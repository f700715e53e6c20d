// Package kubeadm turns a node's /etc/ksboot/node.yaml into what kubeadm needs on that node:
// the configuration file for `kubeadm init` or `kubeadm join`, and the cluster's certificate
// authorities placed in /etc/kubernetes/pki before kubeadm runs.
//
// The configuration is rendered from small explicit Go structs with yaml tags (marshalled by
// gopkg.in/yaml.v3), not from kubeadm's own API types: those live in k8s.io/kubernetes, which
// product code must not import, and the component-config types of k8s.io/kubelet and
// k8s.io/kube-proxy carry only json tags, which yaml.v3 ignores. Small structs also make every
// emitted field a deliberate decision: only what ksboot sets appears, in kubeadm's field order,
// and kubeadm's defaulting fills the rest exactly as it would for a hand-written file. The
// structs cover the subset of kubeadm.k8s.io/v1beta4, kubelet.config.k8s.io/v1beta1 and
// kubeproxy.config.k8s.io/v1alpha1 that ksboot uses; the integration tests feed every rendered
// file to a real kubeadm (`kubeadm config validate`, `kubeadm init --dry-run`,
// `kubeadm init phase certs all`), which rejects unknown fields.
//
// The flow on a node is:
//
//	p := kubeadm.ParamsFromNode(nodeConfig, nodeName, advertiseAddress, endpoint)
//	cfg, err := kubeadm.Render(p)                            // holds the token: write it 0600
//	files, err := kubeadm.WritePKI(root, nodeConfig.Secrets) // writes only on control planes
//
// Decisions recorded here because they shape the cluster:
//
//   - The bootstrap token from the seed never expires (ttl 0s, SeedTokenTTL). Worker seeds, and
//     especially the generic worker seed, are made once and booted whenever a machine is added,
//     possibly months later; kubeadm's default of 24h would make every such seed fail at
//     discovery with an error that names neither the seed nor the cause. Whoever holds a worker
//     seed can join a node, so seeds are secrets (0600); to stop further joins, delete the token
//     (`kubeadm token delete <id>`) and make new seeds with a new token.
//   - Control-plane joiners do not use kubeadm's certificate upload (`--upload-certs` and
//     certificateKey): the uploaded kubeadm-certs Secret expires after two hours, which would
//     break a control plane that joins late or is reinstalled. Their seeds carry the CA key
//     pairs and service-account key instead, which WritePKI places where `kubeadm join
//     --control-plane` expects shared certificates. Params.CertificateKey remains for callers
//     that do upload certificates.
//   - Only control planes get files from WritePKI. A worker must not have
//     /etc/kubernetes/pki/ca.crt before joining: kubeadm's join preflight refuses an existing
//     CA file on workers, and the worker learns the CA from discovery, verified by the pin.
//   - kubeadm's clusterName and networking.dnsDomain both take kubernetes.clusterName
//     (default cluster.local), as KubeKey does, so kubeconfig contexts look the same.
package kubeadm
