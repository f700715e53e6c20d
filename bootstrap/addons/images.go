package addons

import (
	"strings"

	"github.com/ksboot/ksboot/cluster"
)

// Image returns where a node pulls an upstream image from, given the cluster's registry
// settings, the way KubeKey rewrites image names:
//
//   - no registry.privateRegistry: the upstream name, unchanged (registryMirrors are
//     containerd's business and do not change image names);
//   - privateRegistry with namespaceOverride: <registry>/<namespace>/<last path element>:<tag>,
//     KubeKey's flat layout;
//   - privateRegistry alone: <registry>/<upstream path>:<tag>, a mirror path for path with the
//     upstream registry host dropped (ghcr.io/flannel-io/flannel → <registry>/flannel-io/flannel).
//
// This matches how the kubeadm step names control-plane images, so one registry laid out once
// serves every image of the cluster.
func Image(reg cluster.Registry, upstream string) string {
	host := registryHost(reg.PrivateRegistry)
	if host == "" {
		return upstream
	}
	_, path := splitDomain(upstream)
	if ns := strings.Trim(reg.NamespaceOverride, "/"); ns != "" {
		return host + "/" + ns + "/" + path[strings.LastIndex(path, "/")+1:]
	}
	return host + "/" + path
}

// registryHost strips a scheme and trailing slash that users sometimes write in
// privateRegistry ("https://reg.example.com/").
func registryHost(r string) string {
	r = strings.TrimSpace(r)
	for _, scheme := range []string{"https://", "http://"} {
		r = strings.TrimPrefix(r, scheme)
	}
	return strings.TrimSuffix(r, "/")
}

// splitDomain splits an image reference into its registry and the rest (path, tag, digest),
// with Docker's rules: the first element is a registry only if it has a dot or a port or is
// localhost; otherwise the image is on docker.io, and a one-element path is in library/.
func splitDomain(ref string) (domain, rest string) {
	first, remainder, ok := strings.Cut(ref, "/")
	if !ok || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		domain, rest = "docker.io", ref
	} else {
		domain, rest = first, remainder
	}
	if domain == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	return domain, rest
}
