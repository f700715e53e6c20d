// Command pause is the sandbox container of a pod in the test images hack/build-images.sh
// makes (registry.k8s.io/pause:<kubeadm's tag>). It holds the pod's namespaces open by
// running, does nothing else, and, being PID 1 of the pod's PID namespace when the namespace
// is shared, reaps the zombies whose parents exited. SIGTERM or SIGINT end it, which is how
// the container runtime stops a sandbox. Not product code.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is what -v prints; upstream's pause answers -v too, and some tooling asks.
const version = "ksboot-pause"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-v" {
		fmt.Println("pause", version)
		return
	}
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: pause [-v]")
		os.Exit(2)
	}
	if os.Getpid() != 1 {
		// Still useful (the namespaces stay held), but orphans are reaped by someone else.
		fmt.Fprintln(os.Stderr, "pause: warning: not running as PID 1")
	}
	// The kernel drops signals a PID 1 has no handler for; Notify installs handlers, so the
	// runtime's SIGTERM does arrive.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			reap()
			continue
		}
		fmt.Fprintf(os.Stderr, "pause: shutting down, got signal %v\n", s)
		os.Exit(0)
	}
}

// reap collects every exited child. Several SIGCHLDs can arrive as one, hence the loop until
// no child is left to collect.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
