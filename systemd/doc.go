// Package systemd owns the text of the systemd units ksboot puts on a node: the first-boot
// ksboot-bootstrap.service and the well-known paths it shares with the seed and the agent.
// It renders units; it never starts or enables them (cloud-init does that on the node).
package systemd
