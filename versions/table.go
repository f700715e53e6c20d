package versions

import (
	"fmt"
	"strings"
)

// MarkdownTable renders the matrix as the table docs/versions.md shows (a test keeps the two
// equal), so the documentation cannot drift from what ksboot installs.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Kubernetes | default patch | kubeadm API | containerd | runc | crictl | CNI plugins | pause | Calico | Flannel | cgroup v1 | judged here |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range matrix {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			m.Version(), m.Default, strings.TrimPrefix(m.KubeadmAPI, "kubeadm.k8s.io/"), m.Containerd, m.Runc,
			m.Crictl, m.CNIPlugins, m.Pause, m.Calico, m.Flannel, m.CgroupV1, judgedIn(m.Minor))
	}
	return b.String()
}

// judgedIn lists what judged the releases of one minor, for the table.
func judgedIn(minor int) string {
	var parts []string
	for _, p := range Judged {
		v, err := Parse(p.Version)
		if err != nil || v.Minor != minor {
			continue
		}
		what := []string{}
		if p.Kubeadm {
			what = append(what, "kubeadm")
		}
		if p.Cluster {
			what = append(what, "VM cluster")
		}
		parts = append(parts, p.Version+": "+strings.Join(what, ", "))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, "; ")
}
