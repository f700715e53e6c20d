// Package cloudinit owns what cloud-init reads from a ksboot seed: the typed #cloud-config
// (user-data), the NoCloud meta-data and network-config version 2. It renders a node's config
// into those files; it knows nothing about ISO images or disks (package image packs them).
// Everything is built from Go structs marshalled by yaml.v3 and judged in tests by Debian's own
// `cloud-init schema` and `cloud-init devel net-convert`.
package cloudinit
