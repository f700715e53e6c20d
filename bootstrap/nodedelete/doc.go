// Package nodedelete removes a node from a running cluster from outside it, with a kubeconfig
// and (for a control plane) the cluster's etcd CA, as `kk delete node` does over SSH: cordon,
// drain through the eviction API (bounded, naming the pods and PodDisruptionBudgets that
// block it), ask the machine's own agent to reset itself through an annotation on its Node
// (no SSH: the agent follows its Node), delete the Node, and remove the etcd member of a
// control plane.
package nodedelete
