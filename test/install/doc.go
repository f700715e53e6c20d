// Package install is the end-to-end check of the agent's first three phases on a real machine:
// a qemu guest booted from a ksboot seed plus an offline bundle ISO (Debian packages fetched
// with apt-get from the host's own sources, Kubernetes and the container runtime built from
// their Go modules) runs preflight, os and install for real, offline. Only tests live here.
package install
