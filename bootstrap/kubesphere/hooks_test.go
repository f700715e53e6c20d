package kubesphere

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/release"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
)

// TestHookWatchDiagnose: the diagnosis of a failed hook names the hook Job and the problems of
// its pods as last seen, also when Helm and the garbage collector deleted them before the
// install returned; a Job that failed says why; pods of other Jobs are not the hook's.
func TestHookWatchDiagnose(t *testing.T) {
	ctx := context.Background()
	p := testParams(t, "v4.1.3", nil)
	r, err := RenderParams(testChart(t), p, "v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	hookPod := func(name, job, image string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{"batch.kubernetes.io/job-name": job}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "pull access denied"}}}}},
		}
	}
	const img = "docker.io/kubesphere/kubectl:v1.27.16"
	post := hookPod("ks-core-post-install-abcde", "ks-core-post-install", img)
	other := hookPod("helm-executor-xyz", "helm-executor", "docker.io/kubesphere/kubectl:v1.27.16")
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "ks-core-crds-pre-upgrade", Namespace: Namespace},
		Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
			Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}}}}
	cs := fake.NewClientset(post, other, job)

	w := newHookWatch(cs, r.Objects)
	if len(w.jobs) != 2 {
		t.Fatalf("watched Jobs %v, want the two hook Jobs", w.jobs)
	}
	w.poll(ctx)
	for _, name := range []string{post.Name, other.Name} {
		if err := cs.CoreV1().Pods(Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w.poll(ctx)

	he := &HookError{Err: fmt.Errorf("%w after 3s: failed post-install", kube.ErrTimeout), Hooks: []*release.Hook{
		{Name: "ks-core-crds-pre-upgrade", Kind: "Job", Path: "ks-core/charts/ksCRDs/templates/pre-upgrade-job.yaml",
			Events: []release.HookEvent{release.HookPreUpgrade}, LastRun: release.HookExecution{Phase: release.HookPhaseFailed}},
		{Name: "ks-core-post-install", Kind: "Job", Path: "ks-core/templates/post-install-job.yaml",
			Events: []release.HookEvent{release.HookPostInstall, release.HookPostUpgrade}, LastRun: release.HookExecution{Phase: release.HookPhaseFailed}},
	}}
	err = w.diagnose(ctx, p, he)
	var we *kube.WaitError
	if !errors.As(err, &we) || !errors.As(err, &he) || !kube.IsTimeout(err) {
		t.Fatalf("err = %v, want a timed-out WaitError about the HookError", err)
	}
	for _, want := range []string{
		"waiting for KubeSphere v4.1.3 (Helm release kubesphere-system/ks-core, pre-upgrade hook ks-core/charts/ksCRDs/templates/pre-upgrade-job.yaml; post-install,post-upgrade hook ks-core/templates/post-install-job.yaml)",
		"job kubesphere-system/ks-core-crds-pre-upgrade: Failed (BackoffLimitExceeded: Job has reached the specified backoff limit)",
		"job kubesphere-system/ks-core-post-install: NotComplete (post-install,post-upgrade hook ks-core/templates/post-install-job.yaml, phase Failed)",
		"pod kubesphere-system/ks-core-post-install-abcde: ErrImagePull " + img + " (pull access denied)",
		"could not pull " + img,
		"spec.kubesphere.imageRegistry",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), other.Name) {
		t.Errorf("the diagnosis names a pod of another Job:\n%v", err)
	}
}
