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

func TestKubeadmTagsBetweenReleasesRead(t *testing.T) {
	tests := []struct {
		version, coreDNS, etcd string
		exact                  bool
	}{
		{"v1.35.2", "v1.13.1", "3.6.6-0", true},    // v1.35.0 and v1.35.4 agree
		{"v1.36.1", "v1.14.2", "3.6.8-0", true},    // v1.36.0 and v1.36.3 agree
		{"v1.31.5", "v1.11.3", "3.5.24-0", false},  // etcd moved between v1.31.0 and v1.31.14
		{"v1.29.10", "v1.11.1", "3.5.12-0", false}, // after the latest v1.29 read
		{"v1.38.0", "v1.14.6", "3.7.0-0", false},   // newer than the table
		{"v1.20.0", "v1.8.6", "3.5.3-0", false},    // older than the table
		{"latest", "v1.14.6", "3.7.0-0", false},
	}
	for _, tc := range tests {
		coreDNS, etcd, exact := kubeadmTagsFor(tc.version)
		if coreDNS != tc.coreDNS || etcd != tc.etcd || exact != tc.exact {
			t.Errorf("%s: coredns %s, etcd %s, exact %v; want %s, %s, %v", tc.version, coreDNS, etcd, exact, tc.coreDNS, tc.etcd, tc.exact)
		}
	}
}

func TestKubeadmTagsSorted(t *testing.T) {
	for i := 1; i < len(kubeadmTags); i++ {
		a, b := kubeadmTags[i-1].version, kubeadmTags[i].version
		ma, _ := minorOf(a)
		mb, _ := minorOf(b)
		if ma > mb || (ma == mb && comparePatch(a, b) >= 0) {
			t.Errorf("kubeadmTags: %s before %s", a, b)
		}
	}
}
