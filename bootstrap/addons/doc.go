// Package addons is the step that runs on the init node once `kubeadm init` has succeeded:
// it deploys the pod network and the default storage, labels the nodes with their roles,
// waits, bounded, until every host of the cluster file is a Ready node, and then, when it
// deployed OpenEBS, until the default storage can be used.
//
// What ksboot owns is generated from typed Go data (k8s.io/api structs) with pinned versions:
// Flannel (FlannelVersion, after upstream's kube-flannel.yml; net-conf.json carries the
// cluster's pod CIDR) and OpenEBS LocalPV hostpath (OpenEBSVersion; StorageClass
// openebs-hostpath marked default), deployed unless spec.storage.defaultClass names another
// class. Calico is too big to write by hand and changes with every release, so it is an
// Artifact: fetched from its release URL, a mirror (HTTPSource) or the offline bundle
// (DirSource), verified against a SHA-256 pinned here, then patched as parsed objects: on the
// calico-node container CALICO_IPV4POOL_CIDR (upstream has it only as a comment, so it is
// added) and IP_AUTODETECTION_METHOD (the node's InternalIP, see CalicoIPAutodetection), and
// the image of every container and init container; everything else, the
// CustomResourceDefinitions among it, is applied as upstream wrote it. The manifest is never
// committed to the repository (testdata/calico-structure.yaml is a hand-written stand-in with
// its structure). Images are renamed for spec.registry by Image, the same rule the kubeadm
// step uses for control-plane images.
//
// Everything is applied through client-go by server-side apply with the field manager
// "ksboot" (see package kube), so running the step again on a finished cluster changes
// nothing. Render writes the same objects to cni.yaml and storage.yaml for --dry-run.
//
// The node wait counts the control-plane and worker hosts of the cluster file, plus any node
// that joined from the generic worker seed (they are not in the file, so they are counted as
// they register). On timeout the error names the hosts that never joined and, for each node
// that is not Ready, the reason and message of its Ready condition. The storage wait follows
// (the provisioner's pod needs the pod network): the openebs-localpv-provisioner Deployment
// available and StorageClass openebs-hostpath present and marked default, bounded by
// Options.StorageTimeout; on timeout it names what is missing, the pods of the openebs
// namespace that are not ready and why (an image that cannot be pulled, by name), and what
// to do.
package addons
