// Package osconfig prepares the operating system for Kubernetes, as KubeKey's "init OS" step
// does over SSH: host name, a managed block in /etc/hosts, swap off, kernel modules, sysctls,
// time synchronisation and firewall ports. Every change is idempotent and goes through the root
// directory and the exec seam of package host.
package osconfig
