// Command hostsprobe resolves registry hosts the way containerd's CRI plugin does, with
// containerd's own code (core/remotes/docker/config), and prints what it would contact. The
// runtime package's integration test builds it against containerd v2.4.2 in a throwaway module
// to judge the hosts.toml files ksboot renders; it is not part of ksboot.
//
// Usage: hostsprobe CERTS_DIR NAMESPACE...
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: hostsprobe CERTS_DIR NAMESPACE...")
		os.Exit(2)
	}
	resolve := config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(os.Args[1])})
	for _, ns := range os.Args[2:] {
		hosts, err := resolve(ns)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", ns, err)
			os.Exit(1)
		}
		for _, h := range hosts {
			var caps []string
			for _, c := range []struct {
				name string
				c    docker.HostCapabilities
			}{{"pull", docker.HostCapabilityPull}, {"resolve", docker.HostCapabilityResolve}, {"push", docker.HostCapabilityPush}} {
				if h.Capabilities.Has(c.c) {
					caps = append(caps, c.name)
				}
			}
			transport := "default"
			switch t := h.Client.Transport.(type) {
			case *http.Transport:
				if t.TLSClientConfig != nil && t.TLSClientConfig.InsecureSkipVerify {
					transport = "skip-verify"
				}
			default:
				transport = fmt.Sprintf("%T", t)
			}
			fmt.Printf("%s %s://%s%s %s %s\n", ns, h.Scheme, h.Host, h.Path, strings.Join(caps, ","), transport)
		}
	}
}
