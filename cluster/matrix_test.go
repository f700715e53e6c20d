package cluster

import (
	"strings"
	"testing"

	"github.com/ksboot/ksboot/versions"
)

// TestValidateKubernetesVersionMatrix: validate accepts every minor of the version matrix and
// refuses a version outside it, naming the range it supports.
func TestValidateKubernetesVersionMatrix(t *testing.T) {
	for _, m := range versions.Minors() {
		c := Sample(SampleOptions{KubernetesVersion: m.Default})
		if err := Validate(c, nil).Err(); err != nil {
			t.Errorf("%s: %v", m.Default, err)
		}
	}
	for _, v := range []string{"v1.22.17", "v1.38.0", "v2.0.0"} {
		c := Sample(SampleOptions{KubernetesVersion: v})
		err := Validate(c, nil).Err()
		if err == nil || !strings.Contains(err.Error(), "spec.kubernetes.version") || !strings.Contains(err.Error(), versions.Range()) {
			t.Errorf("%s: validate said %v; want an error on spec.kubernetes.version naming %s", v, err, versions.Range())
		}
	}
}

// TestKubernetesFor: the Kubernetes release picked for a KubeSphere release is the newest of
// its published range that ksboot's matrix has, as the issue and KubeKey's defaults expect.
func TestKubernetesFor(t *testing.T) {
	for _, tc := range []struct{ kubesphere, want, err string }{
		{"v3.4.0", "v1.26.5", ""},
		{"v3.4.1", "v1.26.5", ""},
		{"v4.1.3", "v1.30.14", ""},
		{"v3.3.2", "v1.24.17", ""},
		{"v3.1.0", "", "none of them is in ksboot's version matrix"},
		{"v5.0.0", "", "not in ksboot's compatibility table"},
		{"4.1", "", "not a version like"},
	} {
		got, err := KubernetesFor(tc.kubesphere)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %q, %v; want %s", tc.kubesphere, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one containing %q", tc.kubesphere, err, tc.err)
		}
		if tc.err == "" {
			if ok, msg := CheckCompatibility(tc.kubesphere, got); !ok {
				t.Errorf("%s: picked %s, which the compatibility table refuses: %s", tc.kubesphere, got, msg)
			}
		}
	}
}
