// Package preflight measures a node against KubeKey's requirements before the agent changes
// anything: architecture, CPU, memory, disk, operating system, time synchronisation, DNS, free
// ports, host name, cgroup version and any container runtime or kubelet already present (never
// overwritten silently). Every check reads the machine under a root directory or through the
// exec seam, so tests and dry runs measure a prepared directory instead of the host.
package preflight
