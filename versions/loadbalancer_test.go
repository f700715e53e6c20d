package versions

import (
	"strings"
	"testing"
)

// TestSuperAdminConf: kubeadm init writes super-admin.conf from v1.29 (and kube-vip must use it
// during init there); before, admin.conf is bound to system:masters.
func TestSuperAdminConf(t *testing.T) {
	for _, m := range matrix {
		if got, want := m.SuperAdminConf(), m.Minor >= 29; got != want {
			t.Errorf("%s: SuperAdminConf() = %v, want %v", m.Version(), got, want)
		}
	}
}

// TestLoadBalancerImagesPinned: the internal load balancer's images carry a fixed tag, never a
// moving one, and name their registry.
func TestLoadBalancerImagesPinned(t *testing.T) {
	for img, tag := range map[string]string{HAProxyImage: HAProxyVersion, KubeVIPImage: KubeVIPVersion} {
		if !strings.HasSuffix(img, ":"+tag) || tag == "" || strings.Contains(tag, "latest") || !strings.Contains(strings.SplitN(img, "/", 2)[0], ".") {
			t.Errorf("%s: not a pinned image with its registry (tag %q)", img, tag)
		}
	}
}
