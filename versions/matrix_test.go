package versions

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/internal/golden"
)

// TestMatrixRules checks every row against the rules its fields follow, so an edit that breaks
// one (a crictl of another minor, a v1beta4 for a kubeadm that cannot read it) fails here.
func TestMatrixRules(t *testing.T) {
	sha := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for i, m := range matrix {
		if i > 0 && m.Minor != matrix[i-1].Minor+1 {
			t.Errorf("row %d: v1.%d follows v1.%d: minors must be contiguous and ascending", i, m.Minor, matrix[i-1].Minor)
		}
		d, err := Parse(m.Default)
		if err != nil || d.Major != 1 || d.Minor != m.Minor || d.Pre != "" {
			t.Errorf("%s: default %q is not a release of this minor", m.Version(), m.Default)
		}
		wantAPI := KubeadmV1Beta3
		if m.Minor >= 31 {
			wantAPI = KubeadmV1Beta4
		}
		if m.KubeadmAPI != wantAPI {
			t.Errorf("%s: kubeadm API %s, want %s (v1beta4 from v1.31; v1beta3 is gone in v1.37)", m.Version(), m.KubeadmAPI, wantAPI)
		}
		if c, err := Parse(m.Crictl); err != nil || c.Minor != m.Minor {
			t.Errorf("%s: crictl %s is not of the same minor", m.Version(), m.Crictl)
		}
		c, err := Parse(m.Containerd)
		switch {
		case err != nil:
			t.Errorf("%s: containerd %q: %v", m.Version(), m.Containerd, err)
		case m.Minor >= 30 && c.Major < 2:
			t.Errorf("%s: containerd %s: containerd's table lists 2.x from Kubernetes 1.30", m.Version(), m.Containerd)
		case m.Minor < 30 && c.Major >= 2:
			t.Errorf("%s: containerd %s: containerd's table lists no 2.x before Kubernetes 1.30", m.Version(), m.Containerd)
		}
		for name, v := range map[string]string{"runc": m.Runc, "CNI plugins": m.CNIPlugins, "Calico": m.Calico, "Flannel": m.Flannel} {
			if _, err := Parse(v); err != nil {
				t.Errorf("%s: %s: %v", m.Version(), name, err)
			}
		}
		if s, ok := CalicoManifestSHA256(m.Calico); !ok || !sha.MatchString(s) {
			t.Errorf("%s: Calico %s has no pinned calico.yaml digest", m.Version(), m.Calico)
		}
		wantCgroup := CgroupV1Supported
		switch {
		case m.Minor >= 35:
			wantCgroup = CgroupV1Refused
		case m.Minor >= 31:
			wantCgroup = CgroupV1Maintenance
		}
		if m.CgroupV1 != wantCgroup {
			t.Errorf("%s: cgroup v1 %s, want %s", m.Version(), m.CgroupV1, wantCgroup)
		}
		if m.Pause == "" || m.FlannelCNIPlugin == "" {
			t.Errorf("%s: pause or Flannel CNI plugin tag missing", m.Version())
		}
	}
}

// TestJudgedReleases: every release the tests judge is in the matrix, and kubeadm's image tags
// for it were read (so the offline images of a judged release are exact).
func TestJudgedReleases(t *testing.T) {
	if len(Judged) == 0 {
		t.Fatal("no judged releases")
	}
	apis := map[string]bool{}
	for _, p := range Judged {
		m, err := Lookup(p.Version)
		if err != nil {
			t.Errorf("judged %s: %v", p.Version, err)
			continue
		}
		apis[m.KubeadmAPI] = true
		if _, _, exact := KubeadmTags(p.Version); !exact {
			t.Errorf("judged %s: kubeadm's etcd and CoreDNS tags for it were not read", p.Version)
		}
	}
	if !apis[KubeadmV1Beta3] || !apis[KubeadmV1Beta4] {
		t.Errorf("the judged releases cover kubeadm APIs %v; both v1beta3 and v1beta4 must be judged", apis)
	}
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		version string
		minor   int
		err     string
	}{
		{"v1.26.5", 26, ""},
		{"v1.23.0", 23, ""},
		{"v1.37.9", 37, ""},
		{"v1.22.17", 0, "supports v1.23 to v1.37"},
		{"v1.38.0", 0, "supports v1.23 to v1.37"},
		{"v2.0.0", 0, "not in ksboot's version matrix"},
		{"v1.30.0-rc.1", 0, "pre-release"},
		{"1.26.5", 0, "not a version like"},
		{"latest", 0, "not a version like"},
	} {
		m, err := Lookup(tc.version)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.version, err)
		case tc.err == "" && m.Minor != tc.minor:
			t.Errorf("%s: row v1.%d", tc.version, m.Minor)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one containing %q", tc.version, err, tc.err)
		}
		if tc.err == "supports v1.23 to v1.37" && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v does not wrap ErrUnsupported", tc.version, err)
		}
	}
}

func TestParseCompare(t *testing.T) {
	order := []string{"v1.9.0", "v1.26.0-rc.1", "v1.26.0", "v1.26.5", "v1.26.15", "v1.30.0"}
	for i := 1; i < len(order); i++ {
		a, _ := Parse(order[i-1])
		b, _ := Parse(order[i])
		if a.Compare(b) >= 0 || b.Compare(a) <= 0 {
			t.Errorf("%s should sort before %s", order[i-1], order[i])
		}
		if a.String() != order[i-1] {
			t.Errorf("round trip %s → %s", order[i-1], a)
		}
	}
}

// TestDocsTable keeps docs/versions.md's table equal to the matrix (-update rewrites it).
func TestDocsTable(t *testing.T) {
	const path = "../docs/versions.md"
	const begin, end = "<!-- matrix:begin (go test ./versions -update) -->\n", "<!-- matrix:end -->"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s: no %q … %q section", path, strings.TrimSpace(begin), end)
	}
	want := MarkdownTable()
	if got := doc[i+len(begin) : j]; got != want {
		if golden.Updating() {
			if err := os.WriteFile(path, []byte(doc[:i+len(begin)]+want+doc[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("%s: the table differs from the matrix; run go test ./versions -update\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
