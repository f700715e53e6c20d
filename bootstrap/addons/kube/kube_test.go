package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

func TestPodProblem(t *testing.T) {
	base := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "docker.io/kubesphere/ks-installer:v3.4.1"}}},
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		want   string // "" means no problem
	}{
		{"ready", func(p *corev1.Pod) {
			p.Spec.NodeName = "n"
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}, ""},
		{"succeeded", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, ""},
		{"never scheduled", nil, "pod ns/p: Pending (not scheduled to any node yet; is kube-scheduler running?)"},
		{"unschedulable", func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/1 nodes are available"}}
		}, "pod ns/p: Unschedulable (0/1 nodes are available)"},
		{"image pull", func(p *corev1.Pod) {
			p.Spec.NodeName = "n"
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Image: "resolved", State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"},
			}}}
		}, "pod ns/p: ImagePullBackOff docker.io/kubesphere/ks-installer:v3.4.1 (Back-off pulling image)"},
		{"init container crash", func(p *corev1.Pod) {
			p.Spec.NodeName = "n"
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "x"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 5m0s"},
			}}}
		}, "pod ns/p: CrashLoopBackOff (container init: back-off 5m0s)"},
		{"exited", func(p *corev1.Pod) {
			p.Spec.NodeName = "n"
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"},
			}}}
		}, "pod ns/p: Error (container c exited with code 2)"},
		{"creating", func(p *corev1.Pod) {
			p.Spec.NodeName = "n"
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: "network is not ready"},
			}}}
		}, "pod ns/p: ContainerCreating (network is not ready)"},
		{"running not ready", func(p *corev1.Pod) {
			p.Spec.NodeName = "n"
			p.Status.Phase = corev1.PodRunning
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "containers with unready status: [c]"}}
		}, "pod ns/p: NotReady (ContainersNotReady: containers with unready status: [c])"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			if tc.mutate != nil {
				tc.mutate(p)
			}
			got, ok := PodProblem(p)
			if tc.want == "" {
				if ok {
					t.Errorf("PodProblem = %s, want none", got)
				}
				return
			}
			if !ok || got.String() != tc.want {
				t.Errorf("PodProblem = %q, %v; want %q", got.String(), ok, tc.want)
			}
		})
	}
}

func TestDeploymentAvailable(t *testing.T) {
	d := func(gen, observed int64, replicas, updated, available, total int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated, AvailableReplicas: available, Replicas: total},
		}
	}
	for _, tc := range []struct {
		name string
		d    *appsv1.Deployment
		ok   bool
		why  string
	}{
		{"never seen", d(1, 0, 1, 0, 0, 0), false, "kube-controller-manager"},
		{"stale", d(2, 1, 1, 1, 1, 1), false, "latest spec"},
		{"rolling", d(1, 1, 2, 1, 1, 2), false, "1 of 2 replicas updated"},
		{"old pods", d(1, 1, 1, 1, 1, 2), false, "pending termination"},
		{"unavailable", d(1, 1, 2, 2, 1, 2), false, "1 of 2 replicas available"},
		{"available", d(1, 1, 2, 2, 2, 2), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := DeploymentAvailable(tc.d)
			if ok != tc.ok || !strings.Contains(why, tc.why) {
				t.Errorf("DeploymentAvailable = %v, %q; want %v, containing %q", ok, why, tc.ok, tc.why)
			}
		})
	}
}

func TestParseYAML(t *testing.T) {
	in := "# comment only\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n--- # trailing comment\n\n---\n" +
		"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: b\n"
	objs, err := ParseYAML("in", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range objs {
		got = append(got, Describe(u))
	}
	if strings.Join(got, ",") != "ConfigMap a,Secret b" {
		t.Errorf("ParseYAML = %v", got)
	}
	if _, err := ParseYAML("bad", []byte("metadata:\n  name: x\n")); err == nil || !strings.Contains(err.Error(), "bad: document 1") {
		t.Errorf("err = %v, want the document without kind named", err)
	}
}

func TestToUnstructured(t *testing.T) {
	objs, err := ToUnstructured(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	data, err := MarshalYAML(objs)
	if err != nil {
		t.Fatal(err)
	}
	if want := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n"; string(data) != want {
		t.Errorf("rendered %q, want %q (no null creationTimestamp, empty spec or status)", data, want)
	}
}

func TestPoll(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := Poll(ctx, 10*time.Millisecond, time.Second, func(context.Context) (bool, error) {
		calls++
		if calls < 3 {
			return false, errors.New("transient")
		}
		return true, nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Poll = %v after %d calls, want success after 3 (errors retried)", err, calls)
	}
	err = Poll(ctx, 10*time.Millisecond, 50*time.Millisecond, func(context.Context) (bool, error) {
		return false, errors.New("API server unavailable")
	})
	if !IsTimeout(err) || !strings.Contains(err.Error(), "API server unavailable") {
		t.Fatalf("Poll = %v, want a timeout carrying the last error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := Poll(cctx, 10*time.Millisecond, time.Minute, func(context.Context) (bool, error) { return false, nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Poll on a cancelled context = %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "b.yaml")
	if err := WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat: %v, mode %v", err, st.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// FuzzParseYAML feeds arbitrary streams to the parser of downloaded manifests: it must return
// objects or an error, never panic.
func FuzzParseYAML(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n---\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: b\n"))
	f.Add([]byte("--- # x\n: :\n"))
	if data, err := os.ReadFile("../testdata/calico-fake.yaml"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := ParseYAML("fuzz", data)
		if err != nil {
			return
		}
		for _, u := range objs {
			if u.GetKind() == "" || u.GetAPIVersion() == "" {
				t.Fatalf("object without kind or apiVersion: %v", u.Object)
			}
		}
		if _, err := MarshalYAML(objs); err != nil {
			t.Fatalf("a parsed stream does not render again: %v", err)
		}
	})
}

// A pod whose status says only ContainerCreating gets its last warning event (what kubectl
// describe shows), and a pull still in progress names its image as a pull problem.
func TestPodProblemsAddEvents(t *testing.T) {
	now := time.Now()
	creating := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ks"},
			Spec:       corev1.PodSpec{NodeName: "w1", Containers: []corev1.Container{{Name: "c", Image: "img"}}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}},
		}
	}
	event := func(name, pod, typ, reason, msg string, ago time.Duration, count int32) *corev1.Event {
		return &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: "ks"},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "ks", Name: pod},
			Type:           typ, Reason: reason, Message: msg, Count: count,
			LastTimestamp: metav1.NewTime(now.Add(-ago)),
		}
	}
	cs := fake.NewClientset(
		creating("sandbox"), creating("pulling"), creating("quiet"),
		event("e1", "sandbox", corev1.EventTypeNormal, "Scheduled", "Successfully assigned ks/sandbox to w1", 9*time.Minute, 1),
		event("e2", "sandbox", corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: plugin type=\"flannel\" failed (add): loadFlannelSubnetEnv failed: open /run/flannel/subnet.env: no such file or directory", 20*time.Second, 31),
		event("e3", "sandbox", corev1.EventTypeWarning, "FailedMount", "older warning", 5*time.Minute, 1),
		event("e4", "pulling", corev1.EventTypeNormal, "Scheduled", "Successfully assigned ks/pulling to w1", 7*time.Minute, 1),
		event("e5", "pulling", corev1.EventTypeNormal, "Pulling", `Pulling image "docker.io/kubesphere/ks-installer:v3.4.1"`, 6*time.Minute, 1),
		event("e6", "quiet", corev1.EventTypeNormal, "Scheduled", "Successfully assigned ks/quiet to w1", time.Minute, 1),
	)
	got, err := PodProblems(context.Background(), cs, "ks")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("problems %v", got)
	}
	byPod := map[string]Problem{}
	for _, p := range got {
		byPod[p.Object] = p
	}
	if p := byPod["pod ks/sandbox"]; !strings.Contains(p.Message, "last of 31 events ") || !strings.Contains(p.Message, "s ago: FailedCreatePodSandBox: Failed to create pod sandbox") || strings.Contains(p.Message, "older warning") || p.ImagePull() {
		t.Errorf("sandbox problem: %s", p)
	}
	if p := byPod["pod ks/pulling"]; p.Image != "docker.io/kubesphere/ks-installer:v3.4.1" || !p.ImagePull() || !strings.Contains(p.Message, "Pulling: Pulling image") {
		t.Errorf("pulling problem: %s (image %q)", p, p.Image)
	}
	if p := byPod["pod ks/quiet"]; p.String() != "pod ks/quiet: ContainerCreating" {
		t.Errorf("a pod with only normal events: %s", p)
	}
}

// An apply that the API server timed out is sent again; one it refused for good is not.
func TestRetryTransient(t *testing.T) {
	fast := wait.Backoff{Steps: 4, Duration: time.Millisecond}
	timeout := apierrors.NewTimeoutError("request did not complete within requested timeout - context deadline exceeded", 0)
	calls := 0
	err := retryTransient(context.Background(), fast, func() error {
		if calls++; calls < 3 {
			return timeout
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("after two timeouts: err %v, %d calls; want success on the third", err, calls)
	}
	calls = 0
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts"}, "ks-installer", errors.New("no"))
	if err := retryTransient(context.Background(), fast, func() error { calls++; return forbidden }); !apierrors.IsForbidden(err) || calls != 1 {
		t.Errorf("forbidden: err %v, %d calls; want it returned at once", err, calls)
	}
	calls = 0
	resolving := apierrors.NewInternalError(errors.New("error resolving resource"))
	if err := retryTransient(context.Background(), fast, func() error {
		if calls++; calls < 2 {
			return resolving
		}
		return nil
	}); err != nil || calls != 2 {
		t.Errorf("after an internal error: err %v, %d calls; want success on the second", err, calls)
	}
	calls = 0
	if err := retryTransient(context.Background(), fast, func() error { calls++; return timeout }); !apierrors.IsTimeout(err) || calls != 4 {
		t.Errorf("always timing out: err %v, %d calls; want the timeout after 4", err, calls)
	}
}

// A CustomResourceDefinition counts as applied only once it is Established: the wait reads it
// again until the condition is True, and gives up, naming it, when its context ends.
func TestWaitEstablished(t *testing.T) {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crd := func(status string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": "clusterconfigurations.installer.kubesphere.io"},
		}}
		if status != "" {
			u.Object["status"] = map[string]any{"conditions": []any{
				map[string]any{"type": "NamesAccepted", "status": "True"},
				map[string]any{"type": "Established", "status": status},
			}}
		}
		return u
	}
	newClient := func(reads *int, establishedAt int) *dynamicfake.FakeDynamicClient {
		dc := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
			map[schema.GroupVersionResource]string{gvr: "CustomResourceDefinitionList"})
		dc.PrependReactor("get", "customresourcedefinitions", func(clienttesting.Action) (bool, runtime.Object, error) {
			if *reads++; *reads >= establishedAt {
				return true, crd("True"), nil
			}
			return true, crd("False"), nil
		})
		return dc
	}

	reads := 0
	dc := newClient(&reads, 3)
	if err := waitEstablished(context.Background(), dc.Resource(gvr), crd("")); err != nil || reads != 3 {
		t.Errorf("established on the third read: err %v after %d reads", err, reads)
	}
	reads = 0
	if err := waitEstablished(context.Background(), dc.Resource(gvr), crd("True")); err != nil || reads != 0 {
		t.Errorf("established when applied: err %v after %d reads; want no read", err, reads)
	}

	reads = 0
	never := newClient(&reads, 1<<30)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := waitEstablished(ctx, never.Resource(gvr), crd(""))
	if err == nil || !strings.Contains(err.Error(), "CustomResourceDefinition clusterconfigurations.installer.kubesphere.io to be Established") {
		t.Errorf("never established: err %v; want the CRD named", err)
	}
	if reads < 2 {
		t.Errorf("never established: %d reads in 2s; want it read again", reads)
	}
}
