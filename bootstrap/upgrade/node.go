package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/nodedelete"
)

// Defaults of NodeOptions.
const (
	DefaultPoll         = 5 * time.Second
	DefaultWaitTimeout  = 20 * time.Minute
	DefaultDrainTimeout = 5 * time.Minute
	DefaultRetryAfter   = 5 * time.Minute
	callTimeout         = 30 * time.Second
)

// NodeOptions configure a node's agent.
type NodeOptions struct {
	Node         string
	ControlPlane bool
	// Admin, on control planes, returns a client with admin.conf's credentials: it drains and
	// uncordons this node and answers the workers' requests.
	Admin func() (kubernetes.Interface, error)
	// Install puts kubeadm, kubelet and kubectl of a release, and its images, on the node
	// (package install, from the node's artifact source).
	Install func(ctx context.Context, version string) error
	// Images, when set, imports a release's images (package install) as soon as the plan
	// names it, before the node's turn: `kubeadm upgrade apply` moves kube-proxy's DaemonSet
	// and CoreDNS to the new release on every node at once, and an offline node can only run
	// them from images it has. The first control plane waits until every node has them.
	Images func(ctx context.Context, version string) error
	Exec   host.Runner
	// IgnorePreflight lists kubeadm preflight checks to ignore (from spec.preflight.warnOnly).
	IgnorePreflight []string
	// PatchesDir, when set, is the node's kubeadm patches directory (spec.kubernetes.patches):
	// kubeadm keeps no record of it, and the upgraded static pods would lose the patches.
	PatchesDir string
	Logger     *slog.Logger
	// Stream receives kubeadm's output.
	Stream io.Writer
	Now    func() time.Time
	// Poll is the pause between reads while waiting for an answer or the kubelet
	// (DefaultPoll); WaitTimeout bounds each such wait (DefaultWaitTimeout); DrainTimeout
	// bounds a drain (DefaultDrainTimeout).
	Poll         time.Duration
	WaitTimeout  time.Duration
	DrainTimeout time.Duration
	// RetryAfter is how long a node that failed waits before it tries its steps again
	// (DefaultRetryAfter).
	RetryAfter time.Duration
}

func (o NodeOptions) withDefaults() NodeOptions {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Stream == nil {
		o.Stream = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Poll == 0 {
		o.Poll = DefaultPoll
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	return o
}

// Follow is one round of the agent for the upgrade, with the kubelet's identity (cs). Without
// a plan it does nothing. A control plane first answers the workers' requests; then, when every
// node before this one in the plan's order is done, this node takes the turn and upgrades
// itself. Each step is reported in the plan; a failure is reported and tried again after
// o.RetryAfter, and holds up the nodes after it.
func Follow(ctx context.Context, cs kubernetes.Interface, o NodeOptions) error {
	o = o.withDefaults()
	plan, err := GetPlan(ctx, cs)
	if err != nil || plan == nil {
		return err
	}
	if o.ControlPlane && o.Admin != nil {
		if err := answerRequests(ctx, plan, o); err != nil {
			o.Logger.Warn("answering the workers' upgrade requests", "error", err)
		}
	}
	st := plan.Status[o.Node]
	if st.Done(plan.Target) {
		return release(ctx, cs, o)
	}
	i := slices.Index(plan.Order, o.Node)
	if i < 0 {
		return nil // joined after the plan was made, at a release of its own seed
	}
	if st.Target == plan.Target && st.Step == StepFailed && o.Now().Sub(st.Since) < o.RetryAfter {
		return nil
	}
	if o.Images != nil && !(st.Target == plan.Target && st.Images == plan.Target) {
		if err := report(ctx, cs, o, st, plan.Target, StepImages, "importing the images of "+plan.Target); err != nil {
			o.Logger.Warn("cannot report the upgrade step", "node", o.Node, "step", StepImages, "error", err)
		}
		if err := o.Images(ctx, plan.Target); err != nil {
			err = fmt.Errorf("importing the images of %s: %w", plan.Target, err)
			_ = report(ctx, cs, o, Status{}, plan.Target, StepFailed, err.Error())
			return err
		}
		return writeStatus(ctx, cs, o, plan.Target, Status{Target: plan.Target, Step: StepWaiting, Detail: "images of " + plan.Target + " imported", Images: plan.Target})
	}
	for _, before := range plan.Order[:i] {
		if s := plan.Status[before]; !s.Done(plan.Target) {
			return report(ctx, cs, o, st, plan.Target, StepWaiting, fmt.Sprintf("for %s (%s)", before, describe(s, plan.Target)))
		}
	}
	if i == 0 && o.Images != nil {
		for _, after := range plan.Order[1:] {
			if s := plan.Status[after]; !(s.Target == plan.Target && s.Images == plan.Target) && !s.Done(plan.Target) {
				return report(ctx, cs, o, st, plan.Target, StepWaiting, fmt.Sprintf("for %s to import the images of %s (%s)", after, plan.Target, describe(s, plan.Target)))
			}
		}
	}
	holder, err := acquire(ctx, cs, o)
	if err != nil {
		return err
	}
	if holder != o.Node {
		return report(ctx, cs, o, st, plan.Target, StepWaiting, "for its turn, taken by "+holder)
	}
	if err := run(ctx, cs, plan, i == 0, o); err != nil {
		o.Logger.Warn("upgrade step failed", "node", o.Node, "target", plan.Target, "error", err)
		if rerr := report(ctx, cs, o, Status{}, plan.Target, StepFailed, err.Error()); rerr != nil {
			_ = release(ctx, cs, o)
		}
		return err
	}
	if err := report(ctx, cs, o, Status{}, plan.Target, StepDone, ""); err != nil {
		return err
	}
	o.Logger.Info("upgraded", "node", o.Node, "target", plan.Target)
	return nil
}

func describe(s Status, target string) string {
	if s.Target != target || s.Step == "" {
		return "not started"
	}
	if s.Detail != "" {
		return s.Step + ": " + s.Detail
	}
	return s.Step
}

// run is kubeadm's upgrade of one node: kubeadm, kubelet and kubectl of the target; `kubeadm
// upgrade apply` on the first control plane, `kubeadm upgrade node` elsewhere; drain; kubelet
// restarted and awaited at the target; uncordon.
func run(ctx context.Context, cs kubernetes.Interface, plan *Plan, first bool, o NodeOptions) error {
	step := func(name, detail string) error {
		o.Logger.Info("upgrade step", "node", o.Node, "target", plan.Target, "step", name)
		// The API server may be restarting (kubeadm upgrade apply replaces it): only a turn
		// taken by another node stops the steps; a report that cannot be written is logged.
		if err := renew(ctx, cs, o); errors.Is(err, errTurnLost) {
			return err
		} else if err != nil {
			o.Logger.Warn("cannot renew the upgrade turn", "node", o.Node, "error", err)
		}
		if err := report(ctx, cs, o, Status{}, plan.Target, name, detail); err != nil {
			o.Logger.Warn("cannot report the upgrade step", "node", o.Node, "step", name, "error", err)
		}
		return nil
	}
	if err := step(StepInstall, "kubeadm, kubelet and kubectl "+plan.Target); err != nil {
		return err
	}
	if err := o.Install(ctx, plan.Target); err != nil {
		return fmt.Errorf("installing %s: %w", plan.Target, err)
	}
	args := kubeadmArgs(first, plan.Target, o)
	if err := step(StepKubeadm, "kubeadm "+strings.Join(args, " ")); err != nil {
		return err
	}
	if _, err := o.Exec.Run(ctx, host.Cmd{Name: "kubeadm", Args: args, Stream: o.Stream}); err != nil {
		return fmt.Errorf("kubeadm %s: %w", strings.Join(args[:2], " "), err)
	}
	if err := step(StepDrain, ""); err != nil {
		return err
	}
	if err := cordon(ctx, cs, o, true, plan.Target); err != nil {
		return err
	}
	if err := step(StepKubelet, "restarting the kubelet on "+plan.Target); err != nil {
		return err
	}
	for _, args := range [][]string{{"daemon-reload"}, {"restart", "kubelet"}} {
		if _, err := o.Exec.Run(ctx, host.Cmd{Name: "systemctl", Args: args}); err != nil {
			return fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)
		}
	}
	if err := waitKubelet(ctx, cs, plan.Target, o); err != nil {
		return err
	}
	if err := step(StepUncordon, ""); err != nil {
		return err
	}
	// The new kubelet may restart this control plane's static pods (run 3 of the upgrade VM
	// scenario: the API server was away just after the Node turned Ready): the uncordon is
	// tried again within WaitTimeout rather than failing the node's turn for it.
	return kube.Poll(ctx, o.Poll, o.WaitTimeout, func(ctx context.Context) (bool, error) {
		err := cordon(ctx, cs, o, false, plan.Target)
		return err == nil, err
	})
}

// kubeadmArgs are kubeadm's upgrade of this node: `upgrade apply` on the first control plane,
// `upgrade node` elsewhere.
//
// `upgrade apply` always ignores kubeadm's CreateJob check: it runs a pause pod in a Job and
// gives it 15 s to complete (kubeadm v1.26 to v1.31; v1.37 gives 60 s), which a slow or busy
// cluster misses while healthy (kubernetes/kubeadm#3282, kubespray#12006), and a failed apply
// here is retried only after RetryAfter. Its other checks (control-plane Nodes Ready, static
// pod manifests) still run, and this node's own wait for its kubelet at the new release follows.
func kubeadmArgs(first bool, target string, o NodeOptions) []string {
	args := []string{"upgrade", "node"}
	ignore := o.IgnorePreflight
	if first {
		args = []string{"upgrade", "apply", target, "--yes"}
		ignore = append(slices.Clone(ignore), "CreateJob")
	}
	if len(ignore) > 0 {
		args = append(args, "--ignore-preflight-errors="+strings.Join(ignore, ","))
	}
	if o.PatchesDir != "" {
		args = append(args, "--patches", o.PatchesDir)
	}
	return args
}

// cordon drains (or uncordons) this node: itself with admin.conf on a control plane, else by
// asking a control plane's agent and waiting for its answer.
func cordon(ctx context.Context, cs kubernetes.Interface, o NodeOptions, drain bool, target string) error {
	verb := "uncordon"
	if drain {
		verb = "drain"
	}
	if o.ControlPlane && o.Admin != nil {
		admin, err := o.Admin()
		if err != nil {
			return fmt.Errorf("%s: admin.conf: %w", verb, err)
		}
		return act(ctx, admin, o, verb, o.Node)
	}
	request := verb + " " + target
	if err := annotate(ctx, cs, o.Node, map[string]string{RequestAnnotation: request}); err != nil {
		return fmt.Errorf("asking a control plane to %s this node: %w", verb, err)
	}
	var refused error
	err := kube.Poll(ctx, o.Poll, o.WaitTimeout, func(ctx context.Context) (bool, error) {
		n, err := get(ctx, cs, o.Node)
		if err != nil {
			return false, err
		}
		switch answer := n.Annotations[AnswerAnnotation]; {
		case answer == request:
			return true, nil
		case strings.HasPrefix(answer, request+": "):
			refused = fmt.Errorf("a control plane's agent could not %s this node: %s", verb, strings.TrimPrefix(answer, request+": error: "))
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("no control plane's agent answered %q (is ksboot-agent.service running on a control plane? journalctl -u ksboot-agent there): %w", request, err)
	}
	return refused
}

// act drains or uncordons a Node with admin's credentials.
func act(ctx context.Context, admin kubernetes.Interface, o NodeOptions, verb, node string) error {
	if verb == "uncordon" {
		return nodedelete.Uncordon(ctx, admin, node)
	}
	evicted, err := nodedelete.Drain(ctx, nodedelete.Options{Client: admin, Node: node, DrainTimeout: o.DrainTimeout, GracePeriod: -1})
	if err == nil {
		o.Logger.Info("drained for the upgrade", "node", node, "evicted", strings.Join(evicted, ","))
	}
	return err
}

// answerRequests drains or uncordons the workers that asked, answering each request once.
func answerRequests(ctx context.Context, plan *Plan, o NodeOptions) error {
	admin, err := o.Admin()
	if err != nil {
		return err
	}
	list, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range list.Items {
		request := n.Annotations[RequestAnnotation]
		answer := n.Annotations[AnswerAnnotation]
		verb, target, _ := strings.Cut(request, " ")
		if request == "" || target != plan.Target || answer == request || strings.HasPrefix(answer, request+": ") {
			continue
		}
		if verb != "drain" && verb != "uncordon" {
			continue
		}
		o.Logger.Info("answering an upgrade request", "node", n.Name, "request", request)
		answer = request
		if err := act(ctx, admin, o, verb, n.Name); err != nil {
			answer = request + ": error: " + err.Error()
		}
		if err := annotate(ctx, admin, n.Name, map[string]string{AnswerAnnotation: answer}); err != nil {
			return fmt.Errorf("answering %s's request %q: %w", n.Name, request, err)
		}
	}
	return nil
}

// waitKubelet waits until this node's kubelet reports the target and the Node is Ready.
func waitKubelet(ctx context.Context, cs kubernetes.Interface, target string, o NodeOptions) error {
	err := kube.Poll(ctx, o.Poll, o.WaitTimeout, func(ctx context.Context) (bool, error) {
		n, err := get(ctx, cs, o.Node)
		switch {
		case err != nil:
			return false, err
		case n.Status.NodeInfo.KubeletVersion != target:
			return false, fmt.Errorf("its kubelet reports %s", n.Status.NodeInfo.KubeletVersion)
		case !nodeReady(n):
			return false, errors.New("it is not Ready")
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the Node %s is not Ready at %s (see journalctl -u kubelet): %w", o.Node, target, err)
	}
	return nil
}

// report records this node's step in the plan, unless it already says so.
func report(ctx context.Context, cs kubernetes.Interface, o NodeOptions, was Status, target, step, detail string) error {
	if was.Target == target && was.Step == step && was.Detail == detail {
		return nil
	}
	return writeStatus(ctx, cs, o, target, Status{Target: target, Step: step, Detail: detail})
}

// writeStatus writes the node's status for target into the plan, stamped now. The release whose
// images the node has (Status.Images) is kept from the status it replaces unless next names one;
// done or failed gives this node's turn up in the same write.
func writeStatus(ctx context.Context, cs kubernetes.Interface, o NodeOptions, target string, next Status) error {
	next.Since = o.Now().UTC().Truncate(time.Second)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := getPlanMap(ctx, cs)
		if err != nil {
			return err
		}
		if cm.Data["target"] != target {
			return fmt.Errorf("the plan's target changed to %s", cm.Data["target"])
		}
		var cur Status
		if next.Images == "" && json.Unmarshal([]byte(cm.Data[statusKey+o.Node]), &cur) == nil && cur.Target == target {
			next.Images = cur.Images
		}
		data, err := json.Marshal(next)
		if err != nil {
			return err
		}
		cm.Data[statusKey+o.Node] = string(data)
		if holder, _ := parseHolder(cm.Data[holderKey]); holder == o.Node && (next.Step == StepDone || next.Step == StepFailed) {
			delete(cm.Data, holderKey) // the turn ends with the report that ends it
		}
		return updatePlanMap(ctx, cs, cm)
	})
	if err != nil {
		return fmt.Errorf("reporting %s in ConfigMap %s/%s: %w", next.Step, Namespace, Name, err)
	}
	return nil
}

// The turn: the plan's ConfigMap key holderKey names the node working and when it last said
// so ("<node> <RFC 3339 time>"). Not a coordination.k8s.io Lease: the NodeRestriction admission
// plugin (on in every kubeadm cluster) lets a kubelet's identity touch no Lease but its own
// in kube-node-lease. Writes go through the ConfigMap's resourceVersion, so two nodes cannot
// both take a free turn.
const holderKey = "holder"

// acquire takes the turn for this node when it is free, expired or already this node's, and
// returns its holder.
func acquire(ctx context.Context, cs kubernetes.Interface, o NodeOptions) (string, error) {
	cm, err := getPlanMap(ctx, cs)
	if err != nil {
		return "", err
	}
	holder, renewed := parseHolder(cm.Data[holderKey])
	if holder != "" && holder != o.Node && !o.Now().After(renewed.Add(HoldDuration)) {
		return holder, nil
	}
	if err := hold(ctx, cs, cm, o, o.Node); err != nil {
		if apierrors.IsConflict(err) {
			return "another node (the plan changed while this one asked)", nil
		}
		return "", err
	}
	return o.Node, nil
}

var errTurnLost = errors.New("the upgrade turn was taken")

// renew says again that this node works.
func renew(ctx context.Context, cs kubernetes.Interface, o NodeOptions) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := getPlanMap(ctx, cs)
		if err != nil {
			return err
		}
		if holder, _ := parseHolder(cm.Data[holderKey]); holder != o.Node {
			return fmt.Errorf("%w: ConfigMap %s/%s names %q, not %s", errTurnLost, Namespace, Name, holder, o.Node)
		}
		return hold(ctx, cs, cm, o, o.Node)
	})
}

// release gives the turn up if this node holds it.
func release(ctx context.Context, cs kubernetes.Interface, o NodeOptions) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := getPlanMap(ctx, cs)
		if err != nil {
			return nil
		}
		if holder, _ := parseHolder(cm.Data[holderKey]); holder != o.Node {
			return nil
		}
		return hold(ctx, cs, cm, o, "")
	})
}

func getPlanMap(ctx context.Context, cs kubernetes.Interface) (*corev1.ConfigMap, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(cctx, Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", Namespace, Name, err)
	}
	return cm, nil
}

// hold writes holder (or no holder) into the ConfigMap as read; a conflict means another node
// wrote it since.
func hold(ctx context.Context, cs kubernetes.Interface, cm *corev1.ConfigMap, o NodeOptions, holder string) error {
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	if holder == "" {
		delete(cm.Data, holderKey)
	} else {
		cm.Data[holderKey] = holder + " " + o.Now().UTC().Format(time.RFC3339)
	}
	return updatePlanMap(ctx, cs, cm)
}

func updatePlanMap(ctx context.Context, cs kubernetes.Interface, cm *corev1.ConfigMap) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := cs.CoreV1().ConfigMaps(Namespace).Update(cctx, cm, metav1.UpdateOptions{})
	return err
}

// parseHolder reads holderKey's value; a value it cannot read counts as expired.
func parseHolder(v string) (node string, renewed time.Time) {
	node, at, _ := strings.Cut(v, " ")
	renewed, _ = time.Parse(time.RFC3339, at)
	return node, renewed
}

func get(ctx context.Context, cs kubernetes.Interface, node string) (*corev1.Node, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return cs.CoreV1().Nodes().Get(cctx, node, metav1.GetOptions{})
}

// annotate merges annotations into a Node.
func annotate(ctx context.Context, cs kubernetes.Interface, node string, annotations map[string]string) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Nodes().Patch(cctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}
