package joinorder

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/ksboot/ksboot/cluster"
)

// EtcdClientPort is the port kubeadm's stacked etcd serves its clients on, on every control
// plane's advertise address.
const EtcdClientPort = 2379

// EtcdPeerPort is the port of kubeadm's stacked etcd's peer URL (https://<address>:2380).
const EtcdPeerPort = 2380

// ControlPlane is a control plane that must be ready before another one joins.
type ControlPlane struct {
	Name string
	// Address is the static address from spec.hosts, without the prefix length.
	Address string
}

// Etcd is host:port of the control plane's etcd client URL.
func (cp ControlPlane) Etcd() string {
	return net.JoinHostPort(cp.Address, strconv.Itoa(EtcdClientPort))
}

// API is host:port of the control plane's own API server; kubeadm binds it to the endpoint's
// port (localAPIEndpoint.bindPort).
func (cp ControlPlane) API(c *cluster.Cluster) string {
	return net.JoinHostPort(cp.Address, strconv.Itoa(c.Spec.ControlPlaneEndpoint.Port))
}

// MirrorPod is the name of the API server's mirror pod in kube-system.
func (cp ControlPlane) MirrorPod() string { return "kube-apiserver-" + cp.Name }

// Earlier returns the control planes that node waits for before its kubeadm join: those before
// it in spec.roleGroups.control-plane, in that order. It is empty for the first control plane
// and for a node that is no control plane, so a node never waits for itself. An earlier
// control plane without a static address is an error: it could not be asked (validation
// refuses such a cluster file).
func Earlier(c *cluster.Cluster, node string) ([]ControlPlane, error) {
	i := slices.Index(c.Spec.RoleGroups.ControlPlane, node)
	if i <= 0 {
		return nil, nil
	}
	out := make([]ControlPlane, 0, i)
	for _, name := range c.Spec.RoleGroups.ControlPlane[:i] {
		addr := staticAddress(c, name)
		if addr == "" {
			return nil, fmt.Errorf("control plane %s joins after %s, which has no static address in spec.hosts: "+
				"with several control planes every control plane needs one (ksboot validate says so)", node, name)
		}
		out = append(out, ControlPlane{Name: name, Address: addr})
	}
	return out, nil
}

// staticAddress is the host's static IP from the cluster file, or "".
func staticAddress(c *cluster.Cluster, name string) string {
	h, ok := c.Host(name)
	if !ok || h.Address == "" {
		return ""
	}
	ip, _, _ := strings.Cut(h.Address, "/")
	return ip
}

// names lists the control planes' names.
func names(cps []ControlPlane) string {
	out := make([]string, len(cps))
	for i, cp := range cps {
		out[i] = cp.Name
	}
	return strings.Join(out, ", ")
}
