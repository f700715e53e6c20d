package nodedelete

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/drain"
)

// The annotations through which `ksboot node delete` and the node's agent (`ksboot agent
// serve`, which follows its own Node with the kubelet's credentials) agree on a reset: the
// request carries the time it was made, the answer the time the agent began.
const (
	ResetRequestedAnnotation = "ksboot.dev/reset-requested"
	ResetStartedAnnotation   = "ksboot.dev/reset-started"
)

// controlPlaneLabel is the label kubeadm gives control-plane Nodes.
const controlPlaneLabel = "node-role.kubernetes.io/control-plane"

// Defaults, as KubeKey's `kubectl drain --timeout=2m` gives eviction two minutes; a pod that
// does not leave by then is blocked by something a person must look at.
const (
	DefaultDrainTimeout = 2 * time.Minute
	DefaultResetWait    = 10 * time.Minute
	pollEvery           = 5 * time.Second
	reportEvery         = 30 * time.Second
	etcdTimeout         = 30 * time.Second
)

// Options say which node to delete and how.
type Options struct {
	Client kubernetes.Interface
	Node   string
	// DrainTimeout bounds the drain (DefaultDrainTimeout when 0); GracePeriod is each pod's
	// termination grace period (-1: the pod's own).
	DrainTimeout time.Duration
	GracePeriod  int
	// ResetWait bounds the wait for the machine's agent to take up the reset request
	// (DefaultResetWait when 0). A Node that is not Ready is not asked: its machine is gone or
	// its kubelet stopped, and nobody would answer.
	ResetWait time.Duration
	// EtcdTLS, when set, is a client configuration for the cluster's etcd (a certificate of
	// its etcd CA); with it a control plane's etcd member is removed. EtcdEndpoints are the
	// etcd client URLs to ask; empty means port 2379 of every other control plane's
	// InternalIP.
	EtcdTLS       *tls.Config
	EtcdEndpoints []string
	// Progress receives one line per step.
	Progress io.Writer
}

// Result says what was done.
type Result struct {
	ControlPlane bool
	// Evicted are the pods drained away (namespace/name).
	Evicted []string
	// ResetAcknowledged says the machine's agent took up the reset; ResetSkipped why it was
	// not asked.
	ResetAcknowledged bool
	ResetSkipped      string
	NodeDeleted       bool
	// EtcdMember is what happened to the etcd member: "removed <id>", "not a member", or why
	// it was left.
	EtcdMember string
}

// Delete removes the node: cordon, drain, reset request, Node deletion, etcd member. A step
// that fails stops it, saying what state the node is left in; running it again carries on.
func Delete(ctx context.Context, o Options) (*Result, error) {
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.ResetWait == 0 {
		o.ResetWait = DefaultResetWait
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(o.Progress, "node delete %s: "+format+"\n", append([]any{o.Node}, args...)...)
	}
	res := &Result{}
	others, ips, err := otherControlPlanes(ctx, o)
	if err != nil {
		return nil, err
	}
	if len(o.EtcdEndpoints) == 0 {
		for _, ip := range ips {
			o.EtcdEndpoints = append(o.EtcdEndpoints, "https://"+net.JoinHostPort(ip, "2379"))
		}
	}
	node, err := o.Client.CoreV1().Nodes().Get(ctx, o.Node, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		say("no Node %s in the cluster: nothing to cordon, drain or reset", o.Node)
		res.ResetSkipped = "no Node"
		res.EtcdMember, err = removeMember(ctx, o, nil, say)
		return res, err
	case err != nil:
		return nil, fmt.Errorf("reading Node %s: %w", o.Node, err)
	}
	_, res.ControlPlane = node.Labels[controlPlaneLabel]
	if res.ControlPlane && others == 0 {
		return res, fmt.Errorf("%s is the cluster's only control plane: deleting it would end the cluster; add a control plane first, or reset every machine instead", o.Node)
	}

	if res.Evicted, err = cordonAndDrain(ctx, o, node, say); err != nil {
		return res, err
	}

	if err := requestReset(ctx, o, node, res, say); err != nil {
		return res, err
	}

	err = o.Client.CoreV1().Nodes().Delete(ctx, o.Node, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return res, fmt.Errorf("deleting Node %s (it is cordoned and drained; run node delete again): %w", o.Node, err)
	}
	res.NodeDeleted = true
	say("Node deleted")

	if res.ControlPlane {
		res.EtcdMember, err = removeMember(ctx, o, node, say)
	}
	return res, err
}

// otherControlPlanes counts the control planes other than the node and returns their
// InternalIPs, read before its Node is deleted.
func otherControlPlanes(ctx context.Context, o Options) (int, []string, error) {
	list, err := o.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: controlPlaneLabel})
	if err != nil {
		return 0, nil, fmt.Errorf("listing control-plane Nodes: %w", err)
	}
	n, ips := 0, []string(nil)
	for _, node := range list.Items {
		if node.Name == o.Node {
			continue
		}
		n++
		if ip := internalIP(&node); ip != "" {
			ips = append(ips, ip)
		}
	}
	return n, ips, nil
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// cordonAndDrain marks the node unschedulable and evicts its pods as `kubectl drain --force
// --ignore-daemonsets --delete-emptydir-data` does (KubeKey's flags), through kubectl's own
// drain library. When the drain runs out of time it names the pods still there and the
// PodDisruptionBudgets that hold them.
func cordonAndDrain(ctx context.Context, o Options, node *corev1.Node, say func(string, ...any)) ([]string, error) {
	var evicted []string
	var out strings.Builder
	h := &drain.Helper{
		Ctx: ctx, Client: o.Client,
		Force: true, IgnoreAllDaemonSets: true, DeleteEmptyDirData: true,
		GracePeriodSeconds: o.GracePeriod, Timeout: o.DrainTimeout,
		// kubectl drain's pause between evictions a PodDisruptionBudget refused.
		EvictErrorRetryDelay: 5 * time.Second,
		Out:                  &out, ErrOut: &out,
		OnPodDeletedOrEvicted: func(p *corev1.Pod, _ bool) {
			evicted = append(evicted, p.Namespace+"/"+p.Name)
		},
	}
	if err := drain.RunCordonOrUncordon(h, node, true); err != nil {
		return nil, fmt.Errorf("cordoning Node %s: %w", o.Node, err)
	}
	say("cordoned")
	say("draining (at most %s)", o.DrainTimeout)
	if err := drain.RunNodeDrain(h, o.Node); err != nil {
		blocking := blockingPods(ctx, o, h)
		slices.Sort(evicted)
		return evicted, fmt.Errorf("draining Node %s: not done in %s: %s (it stays cordoned; evicted: %s; fix what blocks and run the command again, or raise --drain-timeout)",
			o.Node, o.DrainTimeout, blocking, orNone(evicted))
	}
	slices.Sort(evicted)
	say("drained: evicted %s", orNone(evicted))
	return evicted, nil
}

// blockingPods names the pods still on the node and, for each, the PodDisruptionBudgets that
// select it with no disruption allowed.
func blockingPods(ctx context.Context, o Options, h *drain.Helper) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	list, errs := h.GetPodsForDeletion(o.Node)
	if len(errs) > 0 {
		return fmt.Sprintf("cannot list its pods: %v", errors.Join(errs...))
	}
	var parts []string
	for _, p := range list.Pods() {
		s := "pod " + p.Namespace + "/" + p.Name
		pdbs, err := o.Client.PolicyV1().PodDisruptionBudgets(p.Namespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, b := range pdbs.Items {
				if selects(&b, &p) {
					s += fmt.Sprintf(" (PodDisruptionBudget %s/%s allows %d disruptions)", b.Namespace, b.Name, b.Status.DisruptionsAllowed)
				}
			}
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "its pods were still terminating"
	}
	slices.Sort(parts)
	return "still there: " + strings.Join(parts, ", ")
}

func selects(b *policyv1.PodDisruptionBudget, p *corev1.Pod) bool {
	sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
	return err == nil && !sel.Empty() && sel.Matches(labels.Set(p.Labels))
}

// requestReset asks the machine's agent to reset itself and waits, bounded, until it answers;
// the Node is deleted only then, or its kubelet would register it again. A Node that is not
// Ready is not asked.
func requestReset(ctx context.Context, o Options, node *corev1.Node, res *Result, say func(string, ...any)) error {
	if !ready(node) {
		res.ResetSkipped = "the Node is not Ready"
		say("not Ready: its machine is not asked to reset (if it comes back, run `ksboot agent reset --yes` on it)")
		return nil
	}
	if _, ok := node.Annotations[ResetStartedAnnotation]; ok {
		res.ResetAcknowledged = true
		say("its agent already began a reset")
		return nil
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, ResetRequestedAnnotation, time.Now().UTC().Format(time.RFC3339))
	if _, err := o.Client.CoreV1().Nodes().Patch(ctx, o.Node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("asking %s to reset (annotation %s): %w", o.Node, ResetRequestedAnnotation, err)
	}
	say("asked its agent to reset the machine; waiting for it (at most %s)", o.ResetWait)
	wait, cancel := context.WithTimeout(ctx, o.ResetWait)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	start, reported := time.Now(), time.Now()
	for {
		n, err := o.Client.CoreV1().Nodes().Get(wait, o.Node, metav1.GetOptions{})
		switch {
		case err == nil && n.Annotations[ResetStartedAnnotation] != "":
			res.ResetAcknowledged = true
			say("its agent began the reset at %s", n.Annotations[ResetStartedAnnotation])
			return nil
		case err == nil && !ready(n):
			// The agent stopped the kubelet before it could answer, or the machine went away.
			res.ResetSkipped = "the Node stopped being Ready before its agent answered"
			say("no longer Ready, without an answer from its agent: deleting it")
			return nil
		}
		if time.Since(reported) >= reportEvery {
			say("still waiting for its agent to take up the reset (%s)", time.Since(start).Round(time.Second))
			reported = time.Now()
		}
		select {
		case <-wait.Done():
			return fmt.Errorf("%s is Ready but its agent did not take up the reset request in %s (is ksboot-agent.service running there?): the Node stays cordoned and drained; run `ksboot agent reset --yes` on the machine, then node delete again", o.Node, o.ResetWait)
		case <-tick.C:
		}
	}
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// removeMember removes the node's etcd member, found by name (kubeadm names members after
// their node) or by the peer URL of its InternalIP. kubeadm reset on the machine removes it
// itself when it can; then it is already gone.
func removeMember(ctx context.Context, o Options, node *corev1.Node, say func(string, ...any)) (string, error) {
	if o.EtcdTLS == nil {
		if node == nil {
			return "", nil
		}
		say("etcd member not checked: no etcd credentials (give the cluster file with -f)")
		return "not checked: no etcd credentials", nil
	}
	if len(o.EtcdEndpoints) == 0 {
		return "", fmt.Errorf("removing the etcd member of %s: no etcd endpoint to ask (no other control plane has an InternalIP); give --etcd-endpoints", o.Node)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: o.EtcdEndpoints, TLS: o.EtcdTLS, DialTimeout: etcdTimeout, Context: ctx, Logger: zap.NewNop()})
	if err != nil {
		return "", fmt.Errorf("connecting to etcd at %s: %w", strings.Join(o.EtcdEndpoints, ", "), err)
	}
	defer func() { _ = cli.Close() }()
	cctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	list, err := cli.MemberList(cctx)
	if err != nil {
		return "", fmt.Errorf("listing etcd members at %s: %w", strings.Join(o.EtcdEndpoints, ", "), err)
	}
	var peer string
	if node != nil {
		if ip := internalIP(node); ip != "" {
			peer = "https://" + net.JoinHostPort(ip, "2380")
		}
	}
	for _, m := range list.Members {
		if m.Name != o.Node && (peer == "" || !slices.Contains(m.PeerURLs, peer)) {
			continue
		}
		if _, err := cli.MemberRemove(cctx, m.ID); err != nil {
			return "", fmt.Errorf("removing etcd member %x (%s): %w", m.ID, o.Node, err)
		}
		say("etcd member %x removed", m.ID)
		return fmt.Sprintf("removed %x", m.ID), nil
	}
	say("not an etcd member (any more)")
	return "not a member", nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Drain cordons and drains a Node as node delete does (kubectl's drain library, bounded by
// o.DrainTimeout, naming what blocks); `ksboot upgrade` drains each node before its kubelet is
// replaced. It returns the evicted pods.
func Drain(ctx context.Context, o Options) ([]string, error) {
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	node, err := o.Client.CoreV1().Nodes().Get(ctx, o.Node, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading Node %s: %w", o.Node, err)
	}
	return cordonAndDrain(ctx, o, node, func(format string, args ...any) {
		fmt.Fprintf(o.Progress, "drain %s: "+format+"\n", append([]any{o.Node}, args...)...)
	})
}

// Uncordon makes a Node schedulable again.
func Uncordon(ctx context.Context, cs kubernetes.Interface, node string) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading Node %s: %w", node, err)
	}
	h := &drain.Helper{Ctx: ctx, Client: cs, Out: io.Discard, ErrOut: io.Discard}
	if err := drain.RunCordonOrUncordon(h, n, false); err != nil {
		return fmt.Errorf("uncordoning Node %s: %w", node, err)
	}
	return nil
}
