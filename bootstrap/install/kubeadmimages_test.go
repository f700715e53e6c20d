package install

import (
	"slices"
	"testing"
)

func TestKubeadmImages(t *testing.T) {
	tests := []struct {
		name, version, repo, dnsRepo string
		want                         []string
		exact                        bool
	}{
		{
			name: "default repository", version: "v1.37.2", exact: true,
			want: []string{
				"registry.k8s.io/kube-apiserver:v1.37.2", "registry.k8s.io/kube-controller-manager:v1.37.2",
				"registry.k8s.io/kube-scheduler:v1.37.2", "registry.k8s.io/kube-proxy:v1.37.2",
				"registry.k8s.io/coredns/coredns:v1.14.6", "registry.k8s.io/pause:3.10.2", "registry.k8s.io/etcd:3.7.0-0",
			},
		},
		{
			// bootstrap/kubeadm: a private registry alone mirrors registry.k8s.io path for path.
			name: "private registry mirror", version: "v1.37.2", repo: "reg.local:5000", dnsRepo: "reg.local:5000/coredns", exact: true,
			want: []string{
				"reg.local:5000/kube-apiserver:v1.37.2", "reg.local:5000/kube-controller-manager:v1.37.2",
				"reg.local:5000/kube-scheduler:v1.37.2", "reg.local:5000/kube-proxy:v1.37.2",
				"reg.local:5000/coredns/coredns:v1.14.6", "reg.local:5000/pause:3.10.2", "reg.local:5000/etcd:3.7.0-0",
			},
		},
		{
			name: "namespace override", version: "v1.26.15", repo: "reg.local/kubesphereio", exact: true,
			want: []string{
				"reg.local/kubesphereio/kube-apiserver:v1.26.15", "reg.local/kubesphereio/kube-controller-manager:v1.26.15",
				"reg.local/kubesphereio/kube-scheduler:v1.26.15", "reg.local/kubesphereio/kube-proxy:v1.26.15",
				"reg.local/kubesphereio/coredns:v1.9.3", "reg.local/kubesphereio/pause:3.9", "reg.local/kubesphereio/etcd:3.5.10-0",
			},
		},
		{
			name: "first patch", version: "v1.31.0", exact: true,
			want: []string{
				"registry.k8s.io/kube-apiserver:v1.31.0", "registry.k8s.io/kube-controller-manager:v1.31.0",
				"registry.k8s.io/kube-scheduler:v1.31.0", "registry.k8s.io/kube-proxy:v1.31.0",
				"registry.k8s.io/coredns/coredns:v1.11.1", "registry.k8s.io/pause:3.10", "registry.k8s.io/etcd:3.5.15-0",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, exact := KubeadmImages(tc.version, tc.repo, tc.dnsRepo)
			if !slices.Equal(got, tc.want) || exact != tc.exact {
				t.Errorf("KubeadmImages(%s, %q, %q) =\n%q, exact %v\nwant\n%q, exact %v", tc.version, tc.repo, tc.dnsRepo, got, exact, tc.want, tc.exact)
			}
		})
	}
}
