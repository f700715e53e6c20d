package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreapply "k8s.io/client-go/applyconfigurations/core/v1"
	rbacapply "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/versions"
)

// Where the plan lives and how nodes report. The ConfigMap, the Role and the RoleBinding share
// one name.
const (
	Namespace = "kube-system"
	Name      = "ksboot-upgrade"
	// statusKey + node name is the ConfigMap key of a node's report (JSON Status): a kubelet
	// may read its own Node only (the Node authorizer, since v1.32 with selectors), so the nodes
	// learn each other's progress from the plan.
	statusKey = "status."
	// RequestAnnotation on a worker's Node asks a control plane's agent to "drain <target>" or
	// "uncordon <target>"; AnswerAnnotation carries the request back when done, or the request
	// followed by ": error: ..." when it failed.
	RequestAnnotation = "ksboot.dev/upgrade-request"
	AnswerAnnotation  = "ksboot.dev/upgrade-answer"

	controlPlaneLabel = "node-role.kubernetes.io/control-plane"
	kubeadmConfig     = "kubeadm-config"
	// HoldDuration is how long a node holds the turn without renewing it (at every step).
	HoldDuration = 30 * time.Minute
)

// Steps a node reports, in order.
const (
	StepImages   = "images"
	StepWaiting  = "waiting"
	StepInstall  = "install"
	StepKubeadm  = "kubeadm"
	StepDrain    = "drain"
	StepKubelet  = "kubelet"
	StepUncordon = "uncordon"
	StepDone     = "done"
	StepFailed   = "failed"
)

// Plan is the recorded upgrade and the nodes' reports.
type Plan struct {
	Target    string
	From      string
	Order     []string
	Requested time.Time
	Status    map[string]Status
}

// Status is a node's report of its upgrade.
type Status struct {
	Target string    `json:"target"`
	Step   string    `json:"step"`
	Detail string    `json:"detail,omitempty"`
	Since  time.Time `json:"since"`
	// Images is the release whose images the node has imported ahead of its turn, so that
	// the DaemonSets and Deployments `kubeadm upgrade apply` moves to it run on every node
	// at once, offline too.
	Images string `json:"images,omitempty"`
}

// Done says the node finished the plan's target.
func (s Status) Done(target string) bool { return s.Target == target && s.Step == StepDone }

// GetPlan reads the plan; nil when there is none. A kubelet's identity reads it by name only
// (the Role Request grants); Forbidden before any upgrade was requested counts as none.
func GetPlan(ctx context.Context, cs kubernetes.Interface) (*Plan, error) {
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p := &Plan{Target: cm.Data["target"], From: cm.Data["from"]}
	if o := cm.Data["order"]; o != "" {
		p.Order = strings.Split(o, ",")
	}
	p.Requested, _ = time.Parse(time.RFC3339, cm.Data["requested"])
	p.Status = map[string]Status{}
	for k, v := range cm.Data {
		if node, ok := strings.CutPrefix(k, statusKey); ok {
			var st Status
			if json.Unmarshal([]byte(v), &st) == nil {
				p.Status[node] = st
			}
		}
	}
	if p.Target == "" {
		return nil, fmt.Errorf("ConfigMap %s/%s names no target", Namespace, Name)
	}
	return p, nil
}

// RequestOptions say what to upgrade to.
type RequestOptions struct {
	To  string
	Now func() time.Time
}

// Request checks the skew rules against the cluster and records the plan. Asking again for the
// plan's own target changes nothing but the grants; another target is refused until every
// node has finished the current one.
func Request(ctx context.Context, cs kubernetes.Interface, o RequestOptions) (*Plan, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	to, err := versions.Parse(o.To)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	if _, err := versions.Lookup(o.To); err != nil {
		return nil, fmt.Errorf("--to %s: %w", o.To, err)
	}
	current, err := controlPlaneVersion(ctx, cs)
	if err != nil {
		return nil, err
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	existing, err := GetPlan(ctx, cs)
	if err != nil {
		return nil, err
	}
	if existing != nil && existing.Target != o.To {
		if left := existing.unfinished(nodes.Items); len(left) > 0 {
			return nil, fmt.Errorf("an upgrade to %s is under way (not done: %s): let it finish (ksboot upgrade status) before asking for %s",
				existing.Target, strings.Join(left, ", "), o.To)
		}
	}
	if existing == nil || existing.Target != o.To {
		if err := checkSkew(current, to, nodes.Items); err != nil {
			return nil, err
		}
	}
	plan := &Plan{Target: o.To, From: current.String(), Order: order(nodes.Items), Requested: o.Now().UTC().Truncate(time.Second)}
	if existing != nil && existing.Target == o.To {
		// Asked again: the same plan, without the nodes deleted since (the nodes cannot tell,
		// and would wait for them).
		plan = existing
		plan.Order = slices.DeleteFunc(plan.Order, func(name string) bool {
			return !slices.ContainsFunc(nodes.Items, func(n corev1.Node) bool { return n.Name == name })
		})
	}
	if err := grant(ctx, cs); err != nil {
		return nil, err
	}
	if err := record(ctx, cs, plan); err != nil {
		return nil, err
	}
	return plan, nil
}

// controlPlaneVersion is kubeadm-config's kubernetesVersion: what `kubeadm upgrade apply` last
// set, the control plane's release.
func controlPlaneVersion(ctx context.Context, cs kubernetes.Interface) (versions.Version, error) {
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, kubeadmConfig, metav1.GetOptions{})
	if err != nil {
		return versions.Version{}, fmt.Errorf("reading ConfigMap %s/%s (kubeadm's cluster configuration): %w", Namespace, kubeadmConfig, err)
	}
	var cc struct {
		KubernetesVersion string `yaml:"kubernetesVersion"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["ClusterConfiguration"]), &cc); err != nil {
		return versions.Version{}, fmt.Errorf("ConfigMap %s/%s: ClusterConfiguration: %w", Namespace, kubeadmConfig, err)
	}
	v, err := versions.Parse(cc.KubernetesVersion)
	if err != nil {
		return versions.Version{}, fmt.Errorf("ConfigMap %s/%s: ClusterConfiguration.kubernetesVersion: %w", Namespace, kubeadmConfig, err)
	}
	return v, nil
}

// checkSkew applies kubeadm's and Kubernetes' rules: no downgrade, one minor at a time, no
// kubelet newer than the target, none more than one minor behind it (kubeadm upgrades a
// kubelet by one minor).
func checkSkew(current, to versions.Version, nodes []corev1.Node) error {
	switch {
	case to.Major != current.Major:
		return fmt.Errorf("--to %s: the control plane runs %s; kubeadm does not upgrade across major versions", to, current)
	case to.Compare(current) < 0:
		return fmt.Errorf("--to %s: the control plane runs %s; kubeadm does not downgrade", to, current)
	case to.Minor > current.Minor+1:
		return fmt.Errorf("--to %s: the control plane runs %s; kubeadm upgrades one minor at a time: go to v1.%d first", to, current, current.Minor+1)
	case to.Compare(current) == 0 && len(behind(nodes, to)) == 0:
		return fmt.Errorf("--to %s: every node already runs %s", to, to)
	}
	for _, n := range nodes {
		kv, err := versions.Parse(n.Status.NodeInfo.KubeletVersion)
		if err != nil {
			continue // not reported yet
		}
		if kv.Compare(to) > 0 {
			return fmt.Errorf("--to %s: Node %s's kubelet runs %s, newer than the target (a kubelet must not be newer than its API server)", to, n.Name, kv)
		}
		if kv.Minor < to.Minor-1 {
			return fmt.Errorf("--to %s: Node %s's kubelet runs %s, more than one minor behind; upgrade it to v1.%d first", to, n.Name, kv, to.Minor-1)
		}
	}
	return nil
}

// behind names the Nodes whose kubelet is not at to.
func behind(nodes []corev1.Node, to versions.Version) []string {
	var out []string
	for _, n := range nodes {
		if n.Status.NodeInfo.KubeletVersion != to.String() {
			out = append(out, n.Name)
		}
	}
	return out
}

// unfinished names the plan's nodes that still exist and have not reported done.
func (p *Plan) unfinished(nodes []corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		if slices.Contains(p.Order, n.Name) && !p.Status[n.Name].Done(p.Target) {
			out = append(out, n.Name)
		}
	}
	return out
}

// order is the control planes, oldest first (the first ran kubeadm init, or is the oldest
// survivor), then the workers, oldest first.
func order(nodes []corev1.Node) []string {
	sorted := slices.Clone(nodes)
	sort.SliceStable(sorted, func(i, j int) bool {
		_, ci := sorted[i].Labels[controlPlaneLabel]
		_, cj := sorted[j].Labels[controlPlaneLabel]
		if ci != cj {
			return ci
		}
		ti, tj := sorted[i].CreationTimestamp.Time, sorted[j].CreationTimestamp.Time
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return sorted[i].Name < sorted[j].Name
	})
	out := make([]string, len(sorted))
	for i, n := range sorted {
		out[i] = n.Name
	}
	return out
}

// grant lets system:nodes read and update the plan (their reports and the turn), by name only.
func grant(ctx context.Context, cs kubernetes.Interface) error {
	role := rbacapply.Role(Name, Namespace).WithRules(
		rbacapply.PolicyRule().WithAPIGroups("").WithResources("configmaps").WithResourceNames(Name).WithVerbs("get", "update"))
	if _, err := cs.RbacV1().Roles(Namespace).Apply(ctx, role, applyOptions); err != nil {
		return fmt.Errorf("granting the nodes the plan (Role %s/%s): %w", Namespace, Name, err)
	}
	binding := rbacapply.RoleBinding(Name, Namespace).
		WithRoleRef(rbacapply.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(Name)).
		WithSubjects(rbacapply.Subject().WithAPIGroup(rbacv1.GroupName).WithKind(rbacv1.GroupKind).WithName("system:nodes"))
	if _, err := cs.RbacV1().RoleBindings(Namespace).Apply(ctx, binding, applyOptions); err != nil {
		return fmt.Errorf("granting the nodes the plan (RoleBinding %s/%s): %w", Namespace, Name, err)
	}
	return nil
}

// applyOptions server-side apply as the rest of ksboot does.
var applyOptions = metav1.ApplyOptions{FieldManager: kube.FieldManager, Force: true}

// record applies the plan's own keys to its ConfigMap. The nodes' reports are keys of their
// own (written by them with update), so they stay; those of an earlier target name that target
// and count for nothing.
func record(ctx context.Context, cs kubernetes.Interface, p *Plan) error {
	cm := coreapply.ConfigMap(Name, Namespace).WithData(map[string]string{
		"target": p.Target, "from": p.From, "order": strings.Join(p.Order, ","), "requested": p.Requested.Format(time.RFC3339),
	})
	if _, err := cs.CoreV1().ConfigMaps(Namespace).Apply(ctx, cm, applyOptions); err != nil {
		return fmt.Errorf("recording the plan (ConfigMap %s/%s): %w", Namespace, Name, err)
	}
	return nil
}

// NodeState is one row of Status.
type NodeState struct {
	Node    string
	Role    string
	Version string // the kubelet's
	Ready   bool
	Status  Status
}

// State reads the plan and every Node's version and report, in the plan's order (Nodes not in
// it last).
func State(ctx context.Context, cs kubernetes.Interface) (*Plan, []NodeState, error) {
	p, err := GetPlan(ctx, cs)
	if err != nil {
		return nil, nil, err
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("listing Nodes: %w", err)
	}
	names := order(list.Items)
	if p != nil {
		names = append(slices.Clone(p.Order), names...)
	}
	byName := map[string]*corev1.Node{}
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	var out []NodeState
	seen := map[string]bool{}
	for _, name := range names {
		n := byName[name]
		if n == nil || seen[name] {
			continue
		}
		seen[name] = true
		role := "worker"
		if _, ok := n.Labels[controlPlaneLabel]; ok {
			role = "control-plane"
		}
		st := Status{}
		if p != nil {
			st = p.Status[name]
		}
		out = append(out, NodeState{Node: name, Role: role, Version: n.Status.NodeInfo.KubeletVersion, Ready: nodeReady(n), Status: st})
	}
	return p, out, nil
}

// Finished says every node of the plan reported done; Failed names a node that reported a
// failure (with its detail).
func Finished(p *Plan, nodes []NodeState) bool {
	for _, n := range nodes {
		if slices.Contains(p.Order, n.Node) && !n.Status.Done(p.Target) {
			return false
		}
	}
	return true
}

// Failed returns the first node of the plan that reported a failure, if any.
func Failed(p *Plan, nodes []NodeState) (NodeState, bool) {
	for _, n := range nodes {
		if n.Status.Target == p.Target && n.Status.Step == StepFailed {
			return n, true
		}
	}
	return NodeState{}, false
}

// WriteTable prints the plan and one line per node.
func WriteTable(w io.Writer, p *Plan, nodes []NodeState, now time.Time) {
	if p == nil {
		fmt.Fprintln(w, "no upgrade requested (ksboot upgrade --to VERSION)")
	} else {
		fmt.Fprintf(w, "upgrade %s -> %s, requested %s\n", p.From, p.Target, p.Requested.Format(time.RFC3339))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tVERSION\tREADY\tSTEP\tFOR\tDETAIL")
	for _, n := range nodes {
		step, since := "-", "-"
		if p != nil && n.Status.Target == p.Target {
			step = n.Status.Step
			if !n.Status.Since.IsZero() {
				since = now.Sub(n.Status.Since).Round(time.Second).String()
			}
		}
		// One line per node: a failed step's detail is kubeadm's output, lines and tabs included.
		detail := strings.Join(strings.Fields(n.Status.Detail), " ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", n.Node, n.Role, n.Version, n.Ready, step, since, detail)
	}
	_ = tw.Flush()
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
