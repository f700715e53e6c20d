package loadbalancer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/discovery"
	"github.com/ksboot/ksboot/versions"
)

// Node paths of the load balancer's files.
const (
	// ManifestsDir is the kubelet's staticPodPath on kubeadm nodes.
	ManifestsDir    = "/etc/kubernetes/manifests"
	HAProxyManifest = ManifestsDir + "/haproxy.yaml"
	KubeVIPManifest = ManifestsDir + "/kube-vip.yaml"
	// HAProxyConfigDir is mounted into the haproxy container at the image's configuration
	// directory. It lies outside ManifestsDir: the kubelet would read any file there as a pod.
	HAProxyConfigDir  = "/etc/ksboot/haproxy"
	HAProxyConfigFile = HAProxyConfigDir + "/haproxy.cfg"
	// AdminConf and SuperAdminConf are the kubeconfigs kubeadm writes on control planes;
	// super-admin.conf only on the node that ran kubeadm init, from v1.29.
	AdminConf      = "/etc/kubernetes/admin.conf"
	SuperAdminConf = "/etc/kubernetes/super-admin.conf"
)

// Stage is when the agent writes the files: before kubeadm init or join (again before every
// attempt, because kubeadm reset empties the manifests directory), or once kubeadm has
// finished.
type Stage int

const (
	BeforeKubeadm Stage = iota
	AfterKubeadm
)

// Node is what the load balancer needs to know about the node it is placed on.
type Node struct {
	// Name is the node's host name (for a generic worker, the name derived on the machine).
	Name string
	// ControlPlane is true on control-plane nodes.
	ControlPlane bool
	// Init is true on the node that runs kubeadm init (not on a first control plane that
	// found its cluster running and joins it).
	Init bool
}

// File is one file the load balancer puts on the node, at a node path.
type File struct {
	Path string
	Data []byte
	Mode os.FileMode
	// Note says what the file is, for the console (" (…)" or empty).
	Note string
}

// Kind is the cluster's internal load balancer: "", cluster.InternalLBHAProxy or
// cluster.InternalLBKubeVIP.
func Kind(c *cluster.Cluster) string { return c.Spec.ControlPlaneEndpoint.InternalLoadbalancer }

// Files returns the files the node holds at the stage, in write order: nothing without an
// internal load balancer, haproxy.cfg and the haproxy pod on nodes that are not control
// planes, the kube-vip pod on control planes (before kubeadm only on the init node). The
// cluster must be defaulted and valid.
func Files(c *cluster.Cluster, n Node, stage Stage) ([]File, error) {
	switch Kind(c) {
	case cluster.InternalLBHAProxy:
		if n.ControlPlane {
			return nil, nil
		}
		cfg, err := HAProxyConfigFor(c)
		if err != nil {
			return nil, err
		}
		data := cfg.Render()
		pod, err := renderPod(HAProxyPod(c, data))
		if err != nil {
			return nil, err
		}
		// The image runs haproxy as an unprivileged user: the configuration must be readable.
		return []File{
			{Path: HAProxyConfigFile, Data: data, Mode: 0o644, Note: fmt.Sprintf(" (%d control planes behind %s)", len(cfg.Servers), cfg.Listen)},
			{Path: HAProxyManifest, Data: pod, Mode: 0o600, Note: " (static pod, " + Images(c)[0] + ")"},
		}, nil
	case cluster.InternalLBKubeVIP:
		if !n.ControlPlane || (stage == BeforeKubeadm && !n.Init) {
			return nil, nil
		}
		kubeconfig := AdminConf
		if stage == BeforeKubeadm && versions.MustLookup(c.Spec.Kubernetes.Version).SuperAdminConf() {
			kubeconfig = SuperAdminConf
		}
		pod, err := renderPod(KubeVIPPod(c, n.Name, kubeconfig))
		if err != nil {
			return nil, err
		}
		note := fmt.Sprintf(" (static pod holding the VIP %s, API access through %s)", c.Spec.ControlPlaneEndpoint.Address, kubeconfig)
		return []File{{Path: KubeVIPManifest, Data: pod, Mode: 0o600, Note: note}}, nil
	}
	return nil, nil
}

// Write writes the files under the root and returns the node paths that changed.
func Write(root host.Root, files []File) ([]string, error) {
	var changed []string
	for _, f := range files {
		ok, err := root.WriteFile(f.Path, f.Data, f.Mode)
		if err != nil {
			return changed, fmt.Errorf("writing the internal load balancer's %s: %w", f.Path, err)
		}
		if ok {
			changed = append(changed, f.Path)
		}
	}
	return changed, nil
}

// EndpointIP is the address the control-plane endpoint domain resolves to on the node once
// kubeadm has finished, or "" to leave it as discovery set it: with haproxy 127.0.0.1 on
// nodes that are not control planes (their haproxy) and the node's own address on control
// planes (their own API server, as KubeKey's 127.0.0.1 there does); with kube-vip or an
// external endpoint, the endpoint address that discovery mapped.
func EndpointIP(c *cluster.Cluster, n Node) string {
	if Kind(c) != cluster.InternalLBHAProxy {
		return ""
	}
	if !n.ControlPlane {
		return "127.0.0.1"
	}
	if h, ok := c.Host(n.Name); ok {
		if p, err := netip.ParsePrefix(h.Address); err == nil {
			return p.Addr().String()
		}
	}
	return ""
}

// LocalEndpoint is host:port of the node's haproxy.
func LocalEndpoint(c *cluster.Cluster) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Spec.ControlPlaneEndpoint.Port))
}

// DefaultWait bounds WaitLocal: the kubelet has to start the pod, which may mean pulling the
// haproxy image, and haproxy's first health checks pass after two rounds (rise 2, inter 15s).
const DefaultWait = 10 * time.Minute

// WaitLocal waits until the node's haproxy forwards to an API server whose certificate chains
// to the cluster CA of the node's seed, retrying with back-off until timeout (DefaultWait when
// zero). It talks only to 127.0.0.1.
func WaitLocal(ctx context.Context, nc *cluster.NodeConfig, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultWait
	}
	opts := discovery.OptionsFromNodeConfig(nc)
	opts.Timeout = timeout
	if _, err := discovery.FindStaticWith(ctx, LocalEndpoint(&nc.Cluster), opts); err != nil {
		return fmt.Errorf("waiting for the local haproxy (%s) to reach a control plane: %w", LocalEndpoint(&nc.Cluster), err)
	}
	return nil
}

// Images are the images of the cluster's internal load balancer, named as the nodes pull them
// (spec.registry applied as for every other image); none without one.
func Images(c *cluster.Cluster) []string {
	switch Kind(c) {
	case cluster.InternalLBHAProxy:
		return []string{addons.Image(c.Spec.Registry, versions.HAProxyImage)}
	case cluster.InternalLBKubeVIP:
		return []string{addons.Image(c.Spec.Registry, versions.KubeVIPImage)}
	}
	return nil
}

// Version is the release of the cluster's internal load balancer, for the bundle's manifest.
func Version(c *cluster.Cluster) string {
	switch Kind(c) {
	case cluster.InternalLBHAProxy:
		return versions.HAProxyVersion
	case cluster.InternalLBKubeVIP:
		return versions.KubeVIPVersion
	}
	return ""
}

// renderPod renders a static pod as the kubelet reads it.
func renderPod(p *corev1.Pod) ([]byte, error) {
	objs, err := kube.ToUnstructured([]runtime.Object{p}...)
	if err != nil {
		return nil, err
	}
	return kube.MarshalYAML(objs)
}
