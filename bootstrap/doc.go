// Package bootstrap is the on-node agent that ksboot-bootstrap.service runs on first boot. It
// reads /etc/ksboot/node.yaml, works out who the node is, and drives the node's phases; every
// file it writes goes under a root directory so that tests (and --dry-run) run it against a
// temporary directory. Host access, runtime, kubeadm and state live in subpackages.
package bootstrap
