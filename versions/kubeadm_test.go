package versions

import "testing"

func TestKubeadmTagsBetweenReleasesRead(t *testing.T) {
	tests := []struct {
		version, coreDNS, etcd string
		exact                  bool
	}{
		{"v1.35.2", "v1.13.1", "3.6.6-0", true},    // v1.35.0 and v1.35.4 agree
		{"v1.36.1", "v1.14.2", "3.6.8-0", true},    // v1.36.0 and v1.36.3 agree
		{"v1.31.5", "v1.11.3", "3.5.15-0", true},   // v1.31.1 and v1.31.13 agree
		{"v1.30.5", "v1.11.3", "3.5.15-0", false},  // CoreDNS and etcd moved between v1.30.0 and v1.30.14
		{"v1.29.10", "v1.11.1", "3.5.12-0", false}, // after the latest v1.29 read
		{"v1.38.0", "v1.14.6", "3.7.0-0", false},   // newer than the table
		{"v1.20.0", "v1.8.6", "3.5.1-0", false},    // older than the table
		{"v1.26.3", "v1.9.3", "3.5.6-0", true},     // v1.26.0 and the guide's v1.26.5 agree
		{"latest", "v1.14.6", "3.7.0-0", false},
	}
	for _, tc := range tests {
		coreDNS, etcd, exact := KubeadmTags(tc.version)
		if coreDNS != tc.coreDNS || etcd != tc.etcd || exact != tc.exact {
			t.Errorf("%s: coredns %s, etcd %s, exact %v; want %s, %s, %v", tc.version, coreDNS, etcd, exact, tc.coreDNS, tc.etcd, tc.exact)
		}
	}
}

func TestKubeadmTagsSorted(t *testing.T) {
	for i := 1; i < len(kubeadmTags); i++ {
		a, b := kubeadmTags[i-1].version, kubeadmTags[i].version
		va, errA := Parse(a)
		vb, errB := Parse(b)
		if errA != nil || errB != nil || va.Compare(vb) >= 0 {
			t.Errorf("kubeadmTags: %s before %s", a, b)
		}
	}
}
