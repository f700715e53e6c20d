package cluster

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

// rangePattern is KubeKey's host range syntax in roleGroups: "node[1:3]" means node1, node2, node3.
var rangePattern = regexp.MustCompile(`^(.*)\[(\d+):(\d+)\](.*)$`)

// maxRange bounds a single range so that a typo cannot make a million host names.
const maxRange = 10000

func expandRanges(names []string) []string {
	var out []string
	for _, n := range names {
		m := rangePattern.FindStringSubmatch(n)
		if m == nil {
			out = append(out, n)
			continue
		}
		from, err1 := strconv.Atoi(m[2])
		to, err2 := strconv.Atoi(m[3])
		if err1 != nil || err2 != nil || to < from || to-from >= maxRange {
			out = append(out, n) // left as is: validation reports it as an unknown host
			continue
		}
		// A zero-padded start ("node[01:10]") pads every number to its width.
		width := 0
		if len(m[2]) > 1 && m[2][0] == '0' {
			width = len(m[2])
		}
		for i := from; i <= to; i++ {
			out = append(out, fmt.Sprintf("%s%0*d%s", m[1], width, i, m[4]))
		}
	}
	return out
}

// HostRoles returns the roles of the named host in role-group order (etcd, control-plane, worker).
func (c *Cluster) HostRoles(name string) []string {
	var roles []string
	g := c.Spec.RoleGroups
	for _, group := range []struct {
		role  string
		names []string
	}{{RoleEtcd, g.Etcd}, {RoleControlPlane, g.ControlPlane}, {RoleWorker, g.Worker}} {
		for _, n := range group.names {
			if n == name {
				roles = append(roles, group.role)
				break
			}
		}
	}
	return roles
}

// Host returns the host with the given name.
func (c *Cluster) Host(name string) (Host, bool) {
	for _, h := range c.Spec.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// hostIndex is the index of the named host in spec.hosts, or -1.
func (c *Cluster) hostIndex(name string) int {
	return slices.IndexFunc(c.Spec.Hosts, func(h Host) bool { return h.Name == name })
}

// InitNode is the host that runs kubeadm init: the first of roleGroups.control-plane.
func (c *Cluster) InitNode() string {
	if len(c.Spec.RoleGroups.ControlPlane) == 0 {
		return ""
	}
	return c.Spec.RoleGroups.ControlPlane[0]
}
