// Package host is the agent's only access to the machine: running commands (the one place that
// imports os/exec, like kind's pkg/exec) and reading and writing files under a root directory
// (like Ignition's DestDir), so that tests and --dry-run run every phase against a temporary
// directory. It also identifies the operating system and its package manager.
package host
