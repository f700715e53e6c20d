// Package state owns the agent's on-node state under /var/lib/ksboot: status.json (who the node
// is, which phases ran and how they ended) and the atomic, private file writes every part of the
// agent uses. It follows Ignition's internal/state: JSON between runs, written with temp+rename.
package state
