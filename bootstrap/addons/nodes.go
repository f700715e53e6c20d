package addons

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
)

// Node role labels. kubeadm sets the control-plane label itself (its mark-control-plane
// phase); ksboot applies it too so that the role of every node comes from one place, and adds
// the worker label, which kubeadm never sets but kubectl get nodes and KubeSphere show.
const (
	LabelControlPlane = "node-role.kubernetes.io/control-plane"
	LabelWorker       = "node-role.kubernetes.io/worker"
)

// ExpectedNodes are the hosts of the cluster file that become Kubernetes nodes: those in the
// control-plane or worker role group. A host only in the etcd group runs no kubelet.
func ExpectedNodes(c *cluster.Cluster) []string {
	var out []string
	for _, h := range c.Spec.Hosts {
		roles := c.HostRoles(h.Name)
		if slices.Contains(roles, cluster.RoleControlPlane) || slices.Contains(roles, cluster.RoleWorker) {
			out = append(out, h.Name)
		}
	}
	return out
}

// NodeLabels are the labels ksboot keeps on a node: its role labels and the host's labels
// from the cluster file. A node that is not in the file joined from the generic worker seed.
func NodeLabels(c *cluster.Cluster, node string) map[string]string {
	labels := map[string]string{}
	h, inFile := c.Host(node)
	if !inFile {
		labels[LabelWorker] = ""
		return labels
	}
	maps.Copy(labels, h.Labels)
	roles := c.HostRoles(node)
	if slices.Contains(roles, cluster.RoleControlPlane) {
		labels[LabelControlPlane] = ""
	}
	if slices.Contains(roles, cluster.RoleWorker) {
		labels[LabelWorker] = ""
	}
	return labels
}

// LabelNodes applies NodeLabels to every node that exists and lacks one of them, and returns
// the names of the nodes it changed. Nodes that have their labels are not written at all, so a
// finished cluster sees no requests.
func LabelNodes(ctx context.Context, cs kubernetes.Interface, c *cluster.Cluster) ([]string, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return labelNodes(ctx, cs, c, nodes.Items)
}

func labelNodes(ctx context.Context, cs kubernetes.Interface, c *cluster.Cluster, nodes []corev1.Node) ([]string, error) {
	var changed []string
	for _, n := range nodes {
		want := NodeLabels(c, n.Name)
		missing := false
		for k, v := range want {
			if have, ok := n.Labels[k]; !ok || have != v {
				missing = true
			}
		}
		if !missing {
			continue
		}
		// Only the listed nodes are applied to: an apply to a missing name would create a Node.
		ac := corev1ac.Node(n.Name).WithLabels(want)
		if _, err := cs.CoreV1().Nodes().Apply(ctx, ac, metav1.ApplyOptions{FieldManager: kube.FieldManager, Force: true}); err != nil {
			return changed, fmt.Errorf("applying labels to Node %s: %w", n.Name, err)
		}
		changed = append(changed, n.Name)
	}
	return changed, nil
}

// NodeReport is the state of the nodes during the Ready wait.
type NodeReport struct {
	// Ready are the nodes whose Ready condition is True.
	Ready []string
	// NotReady maps a node to why it is not ready: the Ready condition's reason and message
	// (e.g. "KubeletNotReady: container runtime network not ready: ... cni plugin not initialized").
	NotReady map[string]string
	// Missing are hosts of the cluster file that have not registered a Node.
	Missing []string
}

// Done reports whether every expected node exists and is Ready.
func (r NodeReport) Done() bool { return len(r.Missing) == 0 && len(r.NotReady) == 0 }

func (r NodeReport) String() string {
	parts := []string{fmt.Sprintf("%d Ready", len(r.Ready))}
	if len(r.Missing) > 0 {
		parts = append(parts, "not joined: "+strings.Join(r.Missing, ", "))
	}
	for _, n := range slices.Sorted(maps.Keys(r.NotReady)) {
		parts = append(parts, fmt.Sprintf("%s NotReady (%s)", n, r.NotReady[n]))
	}
	return strings.Join(parts, "; ")
}

// CheckNodes reports which expected nodes are missing or not Ready. Nodes that are not in the
// cluster file (generic workers) are counted as soon as they register: once a machine has
// joined, the cluster is not finished until it is Ready too.
func CheckNodes(c *cluster.Cluster, nodes []corev1.Node) NodeReport {
	r := NodeReport{NotReady: map[string]string{}}
	seen := map[string]bool{}
	for _, n := range nodes {
		seen[n.Name] = true
		ready, why := nodeReady(&n)
		if ready {
			r.Ready = append(r.Ready, n.Name)
		} else {
			r.NotReady[n.Name] = why
		}
	}
	for _, name := range ExpectedNodes(c) {
		if !seen[name] {
			r.Missing = append(r.Missing, name)
		}
	}
	slices.Sort(r.Ready)
	return r
}

func nodeReady(n *corev1.Node) (bool, string) {
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			return true, ""
		}
		why := strings.TrimSpace(c.Reason + ": " + c.Message)
		return false, strings.TrimSuffix(strings.TrimPrefix(why, ": "), ":")
	}
	return false, "no Ready condition reported yet (kubelet starting)"
}

// NodesNotReadyError is a Ready wait that ran out of time, with the last report.
type NodesNotReadyError struct {
	Report  NodeReport
	Timeout time.Duration
	Err     error
}

func (e *NodesNotReadyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "waiting for every node to be Ready: %v", e.Err)
	if len(e.Report.Missing) > 0 {
		fmt.Fprintf(&b, "\n  not joined: %s (is the machine booted from its seed? `ksboot watch` shows its phase)", strings.Join(e.Report.Missing, ", "))
	}
	for _, n := range slices.Sorted(maps.Keys(e.Report.NotReady)) {
		fmt.Fprintf(&b, "\n  %s NotReady: %s", n, e.Report.NotReady[n])
	}
	return b.String()
}

func (e *NodesNotReadyError) Unwrap() error { return e.Err }

// WaitNodesReady waits, bounded by timeout, until every expected node (and every generic
// worker that has joined) is Ready, labelling nodes as they register. progress, if not nil,
// is called whenever the report changes.
func WaitNodesReady(ctx context.Context, cs kubernetes.Interface, c *cluster.Cluster, interval, timeout time.Duration, progress func(NodeReport)) error {
	// Until the first successful list, every expected node counts as missing.
	last := CheckNodes(c, nil)
	lastText := ""
	err := kube.Poll(ctx, interval, timeout, func(ctx context.Context) (bool, error) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, fmt.Errorf("listing nodes: %w", err)
		}
		if _, err := labelNodes(ctx, cs, c, nodes.Items); err != nil {
			return false, err
		}
		last = CheckNodes(c, nodes.Items)
		if s := last.String(); s != lastText && progress != nil {
			lastText = s
			progress(last)
		}
		return last.Done(), nil
	})
	if err != nil {
		return &NodesNotReadyError{Report: last, Timeout: timeout, Err: err}
	}
	return nil
}
