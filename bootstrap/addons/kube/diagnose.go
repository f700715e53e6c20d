package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Problem is one object that keeps a wait from finishing, and why, in the words kubectl would
// show: the waiting reason of a container (ImagePullBackOff, CrashLoopBackOff), the scheduling
// condition (Unschedulable), or the replica count of a workload.
type Problem struct {
	// Object is "pod namespace/name" or "deployment namespace/name".
	Object string
	// Reason is the short cause, e.g. ImagePullBackOff, Unschedulable, Pending, NotAvailable.
	Reason string
	// Image is the image concerned when the reason is a pull failure, or an image the kubelet
	// was still pulling (its last event of the pod was "Pulling").
	Image string
	// Message is the detail the API reported, if any.
	Message string
}

// String renders the problem on one line:
// "pod kubesphere-system/ks-installer-5d9f: ImagePullBackOff docker.io/kubesphere/ks-installer:v3.4.1 (Back-off pulling image ...)".
func (p Problem) String() string {
	s := p.Object + ": " + p.Reason
	if p.Image != "" {
		s += " " + p.Image
	}
	if p.Message != "" {
		s += " (" + p.Message + ")"
	}
	return s
}

// ImagePull reports whether the problem is an image that could not be pulled (or was still
// being pulled when the wait ended).
func (p Problem) ImagePull() bool { return isPullReason(p.Reason) || p.Image != "" }

func isPullReason(r string) bool {
	switch r {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable":
		return true
	}
	return false
}

// PodProblems lists the pods of the namespaces that are not ready, with the reason. Completed
// pods (jobs) are not problems. The list is sorted by object name.
//
// A pod whose status says little (ContainerCreating, NotReady, Pending) also gets its last event,
// as `kubectl describe pod` ends with: a sandbox the CNI could not set up, a volume that does not
// mount, or an image pull that has not finished are only there. Events are best effort: a
// failure to list them leaves the status alone.
func PodProblems(ctx context.Context, cs kubernetes.Interface, namespaces ...string) ([]Problem, error) {
	var out []Problem
	for _, ns := range namespaces {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing pods in %s: %w", ns, err)
		}
		var events map[string]corev1.Event
		for i := range pods.Items {
			p, ok := PodProblem(&pods.Items[i])
			if !ok {
				continue
			}
			if slices.Contains([]string{"ContainerCreating", "NotReady", "Pending"}, p.Reason) {
				if events == nil {
					events = lastPodEvents(ctx, cs, ns)
				}
				if ev, ok := events[pods.Items[i].Name]; ok {
					p = withEvent(p, ev, time.Now())
				}
			}
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b Problem) int { return strings.Compare(a.Object, b.Object) })
	return out, nil
}

// lastPodEvents returns, per pod of the namespace, its newest Warning event, or else its newest
// event if that is the kubelet still pulling an image. Other normal events (Scheduled, Pulled,
// Created) say nothing about what is in the way.
func lastPodEvents(ctx context.Context, cs kubernetes.Interface, ns string) map[string]corev1.Event {
	list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Pod"})
	out := map[string]corev1.Event{}
	if err != nil {
		return out
	}
	newest := map[string]corev1.Event{}
	for _, ev := range list.Items {
		if ev.InvolvedObject.Kind != "Pod" {
			continue
		}
		name := ev.InvolvedObject.Name
		if cur, ok := newest[name]; !ok || !eventTime(ev).Before(eventTime(cur)) {
			newest[name] = ev
		}
		if ev.Type != corev1.EventTypeWarning {
			continue
		}
		if cur, ok := out[name]; !ok || !eventTime(ev).Before(eventTime(cur)) {
			out[name] = ev
		}
	}
	for name, ev := range newest {
		if _, warned := out[name]; !warned && ev.Reason == "Pulling" {
			out[name] = ev
		}
	}
	return out
}

// eventTime is when an event last happened, whichever API generation wrote it.
func eventTime(ev corev1.Event) time.Time {
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	}
	return ev.CreationTimestamp.Time
}

// maxEventMessage bounds the event text added to a problem: sandbox errors can run to kilobytes.
const maxEventMessage = 300

// withEvent adds the pod's last event to the problem's message. A pull still in progress names
// its image, so the wait's error can say which image the site must provide.
func withEvent(p Problem, ev corev1.Event, now time.Time) Problem {
	msg := strings.Join(strings.Fields(ev.Message), " ")
	if len(msg) > maxEventMessage {
		msg = msg[:maxEventMessage] + "..."
	}
	what := "last event"
	if n := eventCount(ev); n > 1 {
		what = fmt.Sprintf("last of %d events", n)
	}
	if at := eventTime(ev); !at.IsZero() {
		what += fmt.Sprintf(" %s ago", now.Sub(at).Round(time.Second))
	}
	text := fmt.Sprintf("%s: %s: %s", what, ev.Reason, msg)
	if p.Message == "" {
		p.Message = text
	} else {
		p.Message += "; " + text
	}
	if ev.Reason == "Pulling" {
		if _, img, ok := strings.Cut(ev.Message, "\""); ok {
			p.Image, _, _ = strings.Cut(img, "\"")
		}
	}
	return p
}

func eventCount(ev corev1.Event) int32 {
	if ev.Series != nil && ev.Series.Count > ev.Count {
		return ev.Series.Count
	}
	return ev.Count
}

// PodProblem says why a pod is not ready; ok is false for a ready or completed pod.
func PodProblem(p *corev1.Pod) (Problem, bool) {
	pr := Problem{Object: "pod " + p.Namespace + "/" + p.Name}
	if p.Status.Phase == corev1.PodSucceeded {
		return pr, false
	}
	if c := podCondition(p, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
		return pr, false
	}
	specImage := map[string]string{}
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		specImage[c.Name] = c.Image
	}
	var creating *corev1.ContainerStateWaiting
	for _, st := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if w := st.State.Waiting; w != nil {
			switch w.Reason {
			case "", "PodInitializing":
				continue
			case "ContainerCreating":
				creating = w
				continue
			}
			pr.Reason, pr.Message = w.Reason, w.Message
			if isPullReason(w.Reason) {
				// The spec's name is what the operator wrote and can mirror; the status may
				// hold a resolved form.
				pr.Image = specImage[st.Name]
				if pr.Image == "" {
					pr.Image = st.Image
				}
			} else {
				pr.Message = strings.TrimSpace("container " + st.Name + ": " + w.Message)
			}
			return pr, true
		}
		if t := st.State.Terminated; t != nil && t.ExitCode != 0 {
			pr.Reason = t.Reason
			if pr.Reason == "" {
				pr.Reason = "Error"
			}
			pr.Message = strings.TrimSpace(fmt.Sprintf("container %s exited with code %d %s", st.Name, t.ExitCode, t.Message))
			return pr, true
		}
	}
	if p.Spec.NodeName == "" {
		if c := podCondition(p, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse {
			pr.Reason, pr.Message = c.Reason, c.Message
			if pr.Reason == "" {
				pr.Reason = "Unschedulable"
			}
			return pr, true
		}
		pr.Reason, pr.Message = "Pending", "not scheduled to any node yet; is kube-scheduler running?"
		return pr, true
	}
	if creating != nil {
		pr.Reason, pr.Message = "ContainerCreating", creating.Message
		return pr, true
	}
	pr.Reason = "NotReady"
	if c := podCondition(p, corev1.PodReady); c != nil {
		pr.Message = strings.TrimSpace(c.Reason + ": " + c.Message)
	}
	if pr.Message == "" || pr.Message == ":" {
		pr.Message = "phase " + string(p.Status.Phase)
	}
	return pr, true
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// DeploymentAvailable says whether a Deployment has rolled out and all its replicas are
// available, as `kubectl rollout status` judges it; why says what is missing.
func DeploymentAvailable(d *appsv1.Deployment) (ok bool, why string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.ObservedGeneration == 0 && d.Generation > 0:
		return false, "not processed by the deployment controller yet; is kube-controller-manager running?"
	case st.ObservedGeneration < d.Generation:
		return false, "waiting for the deployment controller to see the latest spec"
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want)
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas are pending termination", st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)
	}
	return true, ""
}

// WaitDeployments waits, bounded by timeout, until every named Deployment is available. On
// timeout the error lists the Deployments that are not and the pods of their namespaces that
// are not ready, with reasons; it wraps ErrTimeout and is a *WaitError.
func WaitDeployments(ctx context.Context, cs kubernetes.Interface, names []types.NamespacedName, interval, timeout time.Duration) error {
	var pending []Problem
	err := Poll(ctx, interval, timeout, func(ctx context.Context) (bool, error) {
		var now []Problem
		for _, n := range names {
			d, err := cs.AppsV1().Deployments(n.Namespace).Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				now = append(now, Problem{Object: "deployment " + n.String(), Reason: "NotFound", Message: err.Error()})
				continue
			}
			if ok, why := DeploymentAvailable(d); !ok {
				now = append(now, Problem{Object: "deployment " + n.String(), Reason: "NotAvailable", Message: why})
			}
		}
		pending = now
		return len(now) == 0, nil
	})
	if err == nil {
		return nil
	}
	var nss []string
	for _, n := range names {
		if !slices.Contains(nss, n.Namespace) {
			nss = append(nss, n.Namespace)
		}
	}
	return NewWaitError(ctx, cs, fmt.Sprintf("%d Deployments to become available", len(names)), err, pending, nss...)
}

// WaitError is a wait that did not finish: what was waited for, what was still missing, and
// the pods that were not ready and why.
type WaitError struct {
	// What was waited for, e.g. "KubeSphere v3.4.1 (ClusterConfiguration kubesphere-system/ks-installer)".
	What string
	// Pending are the objects the wait itself was watching that were not done.
	Pending []Problem
	// Pods are the pods of the namespaces concerned that were not ready.
	Pods []Problem
	// Err is the underlying error (wrapping ErrTimeout, or the context's error).
	Err error
}

// NewWaitError collects the pod problems of the namespaces (best effort: a failure to list is
// recorded as a problem rather than hiding the timeout) into a WaitError.
func NewWaitError(ctx context.Context, cs kubernetes.Interface, what string, err error, pending []Problem, namespaces ...string) *WaitError {
	we := &WaitError{What: what, Pending: pending, Err: err}
	// The wait's own context may be what ended; the diagnosis still deserves its own time. A
	// loaded control plane took longer than 10 s to list one namespace's pods (run 20 of the
	// e2e suite, under TCG), and the report then said only that the list timed out.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	pods, perr := PodProblems(dctx, cs, namespaces...)
	if perr != nil {
		pods = append(pods, Problem{Object: "pods in " + strings.Join(namespaces, ","), Reason: "Unknown", Message: perr.Error()})
	}
	we.Pods = pods
	return we
}

func (e *WaitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "waiting for %s: %v", e.What, e.Err)
	for _, p := range e.Pending {
		b.WriteString("\n  " + p.String())
	}
	if len(e.Pods) > 0 {
		b.WriteString("\n  pods not ready:")
		for _, p := range e.Pods {
			b.WriteString("\n    " + p.String())
		}
	}
	return b.String()
}

func (e *WaitError) Unwrap() error { return e.Err }

// ImagePullProblems returns the problems that are images that could not be pulled.
func (e *WaitError) ImagePullProblems() []Problem {
	var out []Problem
	for _, p := range append(slices.Clone(e.Pending), e.Pods...) {
		if p.ImagePull() {
			out = append(out, p)
		}
	}
	return out
}

// IsTimeout reports whether err is a wait that ran out of time.
func IsTimeout(err error) bool { return errors.Is(err, ErrTimeout) }
