package kubesphere

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
)

// hookAnnotation marks a chart object as a Helm hook.
const hookAnnotation = "helm.sh/hook"

// jobNameLabels are the labels the job controller puts on a Job's pods (the second one from
// Kubernetes v1.27).
var jobNameLabels = []string{"batch.kubernetes.io/job-name", "job-name"}

// hookWatch follows the pods of a release's hook Jobs while Helm runs them, so that a hook
// that does not finish is diagnosed as a Deployment is (pod, reason, image). It has to look
// while Helm waits: when a hook fails, Helm deletes its Job by the hook's delete policy
// (ks-core's hooks say hook-failed) and the garbage collector then deletes the pods, all
// before the install returns.
type hookWatch struct {
	cs   kubernetes.Interface
	jobs []types.NamespacedName

	mu sync.Mutex
	// pods are the last problem seen of each pod of a hook Job ("pod ns/name"); a pod that
	// became ready or completed is dropped, one that disappeared is kept.
	pods map[string]hookPod
	// failed are the hook Jobs last seen with a Failed condition, and why.
	failed map[types.NamespacedName]string
}

type hookPod struct {
	job     types.NamespacedName
	problem kube.Problem
}

// newHookWatch watches the hook Jobs among the rendered chart's objects.
func newHookWatch(cs kubernetes.Interface, objs []*unstructured.Unstructured) *hookWatch {
	w := &hookWatch{cs: cs, pods: map[string]hookPod{}, failed: map[types.NamespacedName]string{}}
	for _, u := range objs {
		if u.GetKind() == "Job" && u.GetAnnotations()[hookAnnotation] != "" {
			w.jobs = append(w.jobs, objectName(u))
		}
	}
	return w
}

func objectName(u *unstructured.Unstructured) types.NamespacedName {
	ns := u.GetNamespace()
	if ns == "" {
		ns = Namespace
	}
	return types.NamespacedName{Namespace: ns, Name: u.GetName()}
}

// start looks every interval until the returned stop is called; stop looks once more and
// returns when the watch has ended.
func (w *hookWatch) start(ctx context.Context, interval time.Duration) (stop func()) {
	if len(w.jobs) == 0 {
		return func() {}
	}
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			w.poll(ctx)
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(done)
		<-ended
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		w.poll(pctx)
	}
}

// poll records the problems of the hook Jobs' pods and which Jobs failed. Errors are ignored:
// this is diagnosis, and the next look may succeed.
func (w *hookWatch) poll(ctx context.Context) {
	var nss []string
	for _, j := range w.jobs {
		if !slices.Contains(nss, j.Namespace) {
			nss = append(nss, j.Namespace)
		}
	}
	for _, ns := range nss {
		if jobs, err := w.cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for i := range jobs.Items {
				w.recordJob(&jobs.Items[i])
			}
		}
		pods, err := w.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for i := range pods.Items {
			w.recordPod(&pods.Items[i])
		}
	}
}

func (w *hookWatch) recordJob(j *batchv1.Job) {
	n := types.NamespacedName{Namespace: j.Namespace, Name: j.Name}
	if !slices.Contains(w.jobs, n) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			w.failed[n] = strings.TrimSpace(c.Reason + ": " + c.Message)
			return
		}
	}
	delete(w.failed, n)
}

func (w *hookWatch) recordPod(p *corev1.Pod) {
	var job types.NamespacedName
	for _, l := range jobNameLabels {
		if name := p.Labels[l]; name != "" {
			job = types.NamespacedName{Namespace: p.Namespace, Name: name}
			break
		}
	}
	if !slices.Contains(w.jobs, job) {
		return
	}
	pr, bad := kube.PodProblem(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if bad {
		w.pods[pr.Object] = hookPod{job: job, problem: pr}
	} else {
		delete(w.pods, pr.Object)
	}
}

// diagnose turns a hook failure into a WaitError as a failed Deployment wait is one: the hooks
// that did not finish, the problems last seen of their pods (also of pods deleted since), the
// pods of KubeSphere's namespace that are not ready, and the mirror advice for images that
// could not be pulled.
func (w *hookWatch) diagnose(ctx context.Context, p Params, he *HookError) error {
	var pending []kube.Problem
	var hooks []string
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range he.Hooks {
		events := make([]string, len(h.Events))
		for i, e := range h.Events {
			events[i] = e.String()
		}
		hooks = append(hooks, fmt.Sprintf("%s hook %s", strings.Join(events, ","), h.Path))
		n := types.NamespacedName{Namespace: Namespace, Name: h.Name}
		if objs, err := kube.ParseYAML(h.Path, []byte(h.Manifest)); err == nil && len(objs) == 1 {
			n = objectName(objs[0])
		}
		pr := kube.Problem{Object: strings.ToLower(h.Kind) + " " + n.String(), Reason: "NotComplete",
			Message: fmt.Sprintf("%s hook %s, phase %s", strings.Join(events, ","), h.Path, h.LastRun.Phase)}
		if why, ok := w.failed[n]; ok {
			pr.Reason, pr.Message = "Failed", why
		}
		pending = append(pending, pr)
		var pods []kube.Problem
		for _, hp := range w.pods {
			if hp.job == n {
				pods = append(pods, hp.problem)
			}
		}
		slices.SortFunc(pods, func(a, b kube.Problem) int { return strings.Compare(a.Object, b.Object) })
		pending = append(pending, pods...)
	}
	what := fmt.Sprintf("KubeSphere %s (Helm release %s/%s, %s)", p.Version, Namespace, ReleaseName, strings.Join(hooks, "; "))
	we := kube.NewWaitError(ctx, w.cs, what, he, pending, Namespace)
	// A hook pod that still exists is listed with its hook; not twice.
	we.Pods = slices.DeleteFunc(we.Pods, func(pod kube.Problem) bool {
		return slices.ContainsFunc(pending, func(pr kube.Problem) bool { return pr.Object == pod.Object })
	})
	return withHint(we)
}
