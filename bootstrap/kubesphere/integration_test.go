package kubesphere

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/apiserver"
)

var ccGVR = schema.GroupVersionResource{Group: installerGroup, Version: installerVersion, Resource: "clusterconfigurations"}

// resourceVersions reads the live resourceVersion of each object.
func resourceVersions(t *testing.T, kc *kube.Client, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, u := range objs {
		live, err := kc.Get(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		out[kube.Describe(u)] = live.GetResourceVersion()
	}
	return out
}

// TestInstallerV3AgainstAPIServer drives the v3 path on a real API server: a deadline with an
// installer that cannot start yields the diagnosis (unscheduled pod, image pull failure with
// the mirror advice, a Deployment no controller processed); ks-installer's status, patched by
// the test as ks-installer would, completes the step; a re-run changes nothing.
func TestInstallerV3AgainstAPIServer(t *testing.T) {
	s := apiserver.Start(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(s.Config)
	dyn := dynamic.NewForConfigOrDie(s.Config)
	kc, err := kube.New(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	c := testCluster(t, "v3.4.1", nil)
	root := t.TempDir()
	o := Options{Cluster: c, Timeout: 2 * time.Second, Interval: 200 * time.Millisecond, Root: root}
	p, err := ParamsFromCluster(c, "")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := InstallerObjects(p)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("deadline diagnosis", func(t *testing.T) {
		// No controller-manager runs, so the Deployment makes no pods: stand in for its
		// ReplicaSet with two pods, one never scheduled and one whose image cannot be pulled.
		if err := kc.Apply(ctx, objs[:3]); err != nil { // namespace, CRD, ServiceAccount
			t.Fatal(err)
		}
		pod := func(name string) *corev1.Pod {
			return &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{"app": InstallerName}},
				Spec: corev1.PodSpec{ServiceAccountName: InstallerName, Containers: []corev1.Container{
					{Name: "installer", Image: p.InstallerImage},
				}},
			}
		}
		if _, err := cs.CoreV1().Pods(Namespace).Create(ctx, pod("ks-installer-pending"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pulling, err := cs.CoreV1().Pods(Namespace).Create(ctx, pod("ks-installer-pull"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pulling.Status.Phase = corev1.PodPending
		pulling.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: "installer", Image: p.InstallerImage,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason:  "ImagePullBackOff",
				Message: `Back-off pulling image "` + p.InstallerImage + `": not found`,
			}},
		}}
		if _, err := cs.CoreV1().Pods(Namespace).UpdateStatus(ctx, pulling, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}

		start := time.Now()
		_, err = Run(ctx, s.Config, o)
		if err == nil {
			t.Fatal("Run finished although ks-installer never reported status")
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("Run took %s with a 2s timeout", d)
		}
		var we *kube.WaitError
		if !errors.As(err, &we) || !kube.IsTimeout(err) {
			t.Fatalf("err = %v, want a timed-out *kube.WaitError", err)
		}
		for _, want := range []string{
			"waiting for KubeSphere v3.4.1 (ks-installer)",
			"ClusterConfiguration kubesphere-system/ks-installer: NotEnabled (status.core.status is not set yet:",
			"deployment kubesphere-system/ks-installer: NotAvailable (not processed by the deployment controller yet; is kube-controller-manager running?)",
			"pod kubesphere-system/ks-installer-pending: Pending (not scheduled to any node yet; is kube-scheduler running?)",
			"pod kubesphere-system/ks-installer-pull: ImagePullBackOff docker.io/kubesphere/ks-installer:v3.4.1",
			"could not pull docker.io/kubesphere/ks-installer:v3.4.1",
			"spec.kubesphere.imageRegistry",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		t.Logf("timeout diagnosis:\n%v", err)

		// The scheduler's verdict, when there is one, is reported as it stands.
		pending, err := cs.CoreV1().Pods(Namespace).Get(ctx, "ks-installer-pending", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pending.Status.Conditions = []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
			Message: "0/3 nodes are available: 3 Insufficient memory.",
		}}
		if _, err := cs.CoreV1().Pods(Namespace).UpdateStatus(ctx, pending, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err = Run(ctx, s.Config, o)
		want := "pod kubesphere-system/ks-installer-pending: Unschedulable (0/3 nodes are available: 3 Insufficient memory.)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
		for _, name := range []string{"ks-installer-pending", "ks-installer-pull"} {
			if err := cs.CoreV1().Pods(Namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("status completes", func(t *testing.T) {
		// ks-installer writes its progress into the ClusterConfiguration (no status
		// subresource); do the same, with its own field manager.
		patch := []byte(`{"status":{"clusterId":"test","core":{"status":"enabled","version":"v3.4.1","enabledTime":"2026-11-25T10:00:00Z"}}}`)
		if _, err := dyn.Resource(ccGVR).Namespace(Namespace).Patch(ctx, ClusterConfigurationName, types.MergePatchType, patch,
			metav1.PatchOptions{FieldManager: "ks-installer"}); err != nil {
			t.Fatal(err)
		}
		o := o
		o.Timeout = 20 * time.Second
		b, err := Run(ctx, s.Config, o)
		if err != nil {
			t.Fatal(err)
		}
		if b.Console != "http://192.168.0.11:30880" || b.Password != DefaultAdminPassword || b.Account != "admin" {
			t.Errorf("banner %+v", b)
		}
		issue, err := os.ReadFile(filepath.Join(root, IssueFile))
		if err != nil || !strings.Contains(string(issue), "Welcome to KubeSphere!") {
			t.Errorf("issue file: %v\n%s", err, issue)
		}

		var names []string
		for _, u := range objs {
			live, err := kc.Get(ctx, u)
			if err != nil {
				t.Fatalf("%s was not created: %v", kube.Describe(u), err)
			}
			names = append(names, kube.Describe(live))
		}
		t.Logf("created: %s", strings.Join(names, ", "))
		cc, _ := kc.Get(ctx, objs[len(objs)-1])
		if st, _, _ := unstructured.NestedString(cc.Object, "status", "core", "status"); st != "enabled" {
			t.Errorf("applying the ClusterConfiguration again dropped ks-installer's status: %v", cc.Object["status"])
		}
		if img := mustDeployment(t, cs, InstallerName).Spec.Template.Spec.Containers[0].Image; img != p.InstallerImage {
			t.Errorf("installer image %s, want %s", img, p.InstallerImage)
		}

		before := resourceVersions(t, kc, objs)
		if _, err := Run(ctx, s.Config, o); err != nil {
			t.Fatal(err)
		}
		after := resourceVersions(t, kc, objs)
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s: resourceVersion %s → %s on re-apply", k, v, after[k])
			}
		}
	})

	t.Run("generated password", func(t *testing.T) {
		// An empty adminPassword makes ks-installer generate one and keep it in its Secret,
		// where its own banner reads it; ksboot's banner must show that, not P@88w0rd.
		o := o
		o.Timeout = 20 * time.Second
		o.Cluster = testCluster(t, "v3.4.1", func(c *cluster.Cluster) {
			c.Spec.KubeSphere.Configuration = map[string]any{"authentication": map[string]any{"adminPassword": ""}}
		})
		b, err := Run(ctx, s.Config, o)
		if err != nil {
			t.Fatal(err)
		}
		if b.Password != GeneratedPassword || !b.CustomPassword {
			t.Errorf("without the installer's Secret the banner says %q, want %q", b.Password, GeneratedPassword)
		}
		const generated = "x7RvQ2mKp9LtWb4Z"
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: InstallerSecret, Namespace: Namespace},
			Data:       map[string][]byte{InstallerSecretPasswordKey: []byte(generated)},
		}
		if _, err := cs.CoreV1().Secrets(Namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if b, err = Run(ctx, s.Config, o); err != nil {
			t.Fatal(err)
		}
		if b.Password != generated || !strings.Contains(b.String(), "Password: "+generated) {
			t.Errorf("banner password %q, want the installer's %q", b.Password, generated)
		}
		issue, err := os.ReadFile(filepath.Join(root, IssueFile))
		if err != nil || strings.Contains(string(issue), generated) {
			t.Errorf("the login screen must not show a generated password (%v):\n%s", err, issue)
		}
	})
}

func mustDeployment(t *testing.T, cs kubernetes.Interface, name string) *appsv1.Deployment {
	t.Helper()
	d, err := cs.AppsV1().Deployments(Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestChartV4AgainstAPIServer drives the v4 path: a wrong chart URL fails clearly; the test
// chart is installed with Helm (release deployed after its post-install hook Job completed,
// ConfigMap and Deployment with the registry override and the console URL); the availability
// wait times out with the diagnosis (no controllers); a re-run adds no Helm revision and
// changes no object; an upgrade runs the pre- and post-upgrade hooks; once the Deployments
// report available the step finishes with the banner.
func TestChartV4AgainstAPIServer(t *testing.T) {
	s := apiserver.Start(t)
	srv := chartServer(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(s.Config)
	kc, err := kube.New(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	c := testCluster(t, "v4.1.3", func(c *cluster.Cluster) {
		c.Spec.KubeSphere.ImageRegistry = "mirror.example.com/ks"
		c.Spec.KubeSphere.Chart = srv.URL + "/main/ks-core-1.1.4.tgz"
		c.Spec.KubeSphere.Configuration = map[string]any{"console": map[string]any{"nodePort": 30990}}
	})
	// The chart's hooks and its Deployments share the deadline.
	o := Options{Cluster: c, HTTPClient: srv.Client(), Timeout: 5 * time.Second, Interval: 200 * time.Millisecond}
	jobs := startJobStandIn(t, cs)
	jobs.complete.Store(true)

	t.Run("wrong chart URL", func(t *testing.T) {
		bad := *c
		bad.Spec.KubeSphere.Chart = srv.URL + "/main/ks-core-0.0.0.tgz"
		o := o
		o.Cluster = &bad
		_, err := Run(ctx, s.Config, o)
		var ce *ChartError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), bad.Spec.KubeSphere.Chart) ||
			!strings.Contains(err.Error(), "404 Not Found") || !strings.Contains(err.Error(), "spec.kubesphere.chart") {
			t.Fatalf("err = %v, want a ChartError naming the URL, the 404 and how to point at a mirror", err)
		}
		if _, err := cs.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("a failed chart fetch created %s (%v)", Namespace, err)
		}
	})

	var revision int
	t.Run("install, availability deadline", func(t *testing.T) {
		_, err := Run(ctx, s.Config, o)
		var we *kube.WaitError
		if !errors.As(err, &we) || !kube.IsTimeout(err) {
			t.Fatalf("err = %v, want a timed-out *kube.WaitError (no controller makes the Deployment available)", err)
		}
		for _, want := range []string{
			"waiting for KubeSphere v4.1.3 (Helm release kubesphere-system/ks-core)",
			"deployment kubesphere-system/ks-apiserver: NotAvailable (not processed by the deployment controller yet; is kube-controller-manager running?)",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		t.Logf("timeout diagnosis:\n%v", err)
		rel := lastRelease(t, kc)
		if rel.Info.Status != release.StatusDeployed || rel.Chart.Metadata.Version != "1.1.4" {
			t.Fatalf("release %s revision %d: status %s chart %s", rel.Name, rel.Version, rel.Info.Status, rel.Chart.Metadata.Version)
		}
		revision = rel.Version
		cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, "kubesphere-config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["imageRegistry"] != "mirror.example.com/ks" || cm.Data["extensionRegistry"] != "mirror.example.com/ks" || cm.Data["consoleNodePort"] != "30990" ||
			!strings.Contains(cm.Data["kubesphere.yaml"], `url: "http://192.168.0.11:30990"`) {
			t.Errorf("chart values not applied: %v", cm.Data)
		}
		if got := jobs.ran(); !slices.Equal(got, []string{"ks-core-post-install"}) {
			t.Errorf("hook Jobs %q, want the post-install hook", got)
		}
		if img := mustDeployment(t, cs, "ks-apiserver").Spec.Template.Spec.Containers[0].Image; img != "mirror.example.com/ks/kubesphere/ks-apiserver:v4.1.3" {
			t.Errorf("ks-apiserver image %s, want the registry override", img)
		}
	})

	t.Run("re-run changes nothing", func(t *testing.T) {
		cmBefore, _ := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, "kubesphere-config", metav1.GetOptions{})
		depBefore := mustDeployment(t, cs, "ks-apiserver")
		if _, err := Run(ctx, s.Config, o); !kube.IsTimeout(err) {
			t.Fatalf("err = %v, want the same availability timeout", err)
		}
		if rel := lastRelease(t, kc); rel.Version != revision {
			t.Errorf("re-run made Helm revision %d, want %d kept", rel.Version, revision)
		}
		cmAfter, _ := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, "kubesphere-config", metav1.GetOptions{})
		depAfter := mustDeployment(t, cs, "ks-apiserver")
		if cmBefore.ResourceVersion != cmAfter.ResourceVersion || depBefore.ResourceVersion != depAfter.ResourceVersion {
			t.Errorf("re-run changed objects: ConfigMap %s → %s, Deployment %s → %s",
				cmBefore.ResourceVersion, cmAfter.ResourceVersion, depBefore.ResourceVersion, depAfter.ResourceVersion)
		}
	})

	t.Run("changed values upgrade", func(t *testing.T) {
		changed := *c
		changed.Spec.KubeSphere.Configuration = map[string]any{"console": map[string]any{"nodePort": 30991}}
		o := o
		o.Cluster = &changed
		if _, err := Run(ctx, s.Config, o); !kube.IsTimeout(err) {
			t.Fatalf("err = %v, want the availability timeout after the upgrade", err)
		}
		rel := lastRelease(t, kc)
		cm, _ := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, "kubesphere-config", metav1.GetOptions{})
		if rel.Version != revision+1 || cm.Data["consoleNodePort"] != "30991" {
			t.Errorf("revision %d (want %d), consoleNodePort %q", rel.Version, revision+1, cm.Data["consoleNodePort"])
		}
		if got, want := jobs.ran(), []string{"ks-core-post-install", "ks-core-crds-pre-upgrade", "ks-core-post-install"}; !slices.Equal(got, want) {
			t.Errorf("hook Jobs %q, want %q", got, want)
		}
		revision = rel.Version
	})

	t.Run("available", func(t *testing.T) {
		// Stand in for the deployment controller.
		deps, err := ChartDeployments(lastRelease(t, kc))
		if err != nil || len(deps) != 4 {
			t.Fatalf("release Deployments %v (%v), want 4", deps, err)
		}
		for _, n := range deps {
			d := mustDeployment(t, cs, n.Name)
			d.Status = appsv1.DeploymentStatus{
				ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1,
				Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}},
			}
			if _, err := cs.AppsV1().Deployments(Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		changed := *c
		changed.Spec.KubeSphere.Configuration = map[string]any{"console": map[string]any{"nodePort": 30991}}
		o := o
		o.Cluster = &changed
		b, err := Run(ctx, s.Config, o)
		if err != nil {
			t.Fatal(err)
		}
		if b.Console != "http://192.168.0.11:30991" || b.Version != "v4.1.3" {
			t.Errorf("banner %+v", b)
		}
		if rel := lastRelease(t, kc); rel.Version != revision {
			t.Errorf("Helm revision %d, want %d", rel.Version, revision)
		}
	})
}

func lastRelease(t *testing.T, kc *kube.Client) *release.Release {
	t.Helper()
	cfg, err := helmConfig(kc, Namespace, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	hist, err := action.NewHistory(cfg).Run(ReleaseName)
	if err != nil {
		t.Fatalf("Helm history of %s: %v", ReleaseName, err)
	}
	return slices.MaxFunc(hist, func(a, b *release.Release) int { return a.Version - b.Version })
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestChartV4HookAgainstAPIServer: a post-install hook whose pod cannot pull its image makes
// the step fail, bounded by its timeout, with the diagnosis a Deployment gets (the hook, its
// pod, the image, the mirror advice) instead of Helm's bare "timed out waiting for the
// condition", although Helm deleted the failed hook Job (its hook-failed policy) and with it,
// as the garbage collector would, the pod.
func TestChartV4HookAgainstAPIServer(t *testing.T) {
	s := apiserver.Start(t)
	srv := chartServer(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(s.Config)
	kc, err := kube.New(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	c := testCluster(t, "v4.1.3", func(c *cluster.Cluster) {
		c.Spec.KubeSphere.ImageRegistry = "mirror.example.com/ks"
		c.Spec.KubeSphere.Chart = srv.URL + "/main/ks-core-1.1.4.tgz"
	})
	const timeout = 3 * time.Second
	o := Options{Cluster: c, HTTPClient: srv.Client(), Timeout: timeout, Interval: 100 * time.Millisecond}
	jobs := startJobStandIn(t, cs)

	start := time.Now()
	_, err = Run(ctx, s.Config, o)
	if d := time.Since(start); d > timeout+20*time.Second {
		t.Errorf("Run took %s with a %s timeout", d, timeout)
	}
	var we *kube.WaitError
	var he *HookError
	if !errors.As(err, &we) || !errors.As(err, &he) || !kube.IsTimeout(err) {
		t.Fatalf("err = %v, want a timed-out *kube.WaitError about a *HookError", err)
	}
	const img = "mirror.example.com/ks/kubesphere/kubectl:v1.27.16"
	for _, want := range []string{
		"waiting for KubeSphere v4.1.3 (Helm release kubesphere-system/ks-core, post-install,post-upgrade hook ks-core/templates/post-install-job.yaml)",
		"failed post-install: timed out waiting for the condition",
		"job kubesphere-system/ks-core-post-install: NotComplete",
		"pod kubesphere-system/ks-core-post-install-",
		": ImagePullBackOff " + img + " (Back-off pulling image",
		"could not pull " + img + ".",
		"spec.kubesphere.imageRegistry",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "error occurred") {
		t.Errorf("error keeps Helm's multi-error layout:\n%v", err)
	}
	t.Logf("hook diagnosis:\n%v", err)

	if got := jobs.ran(); !slices.Equal(got, []string{"ks-core-post-install"}) {
		t.Errorf("hook Jobs %q, want the post-install hook", got)
	}
	if _, err := cs.BatchV1().Jobs(Namespace).Get(ctx, "ks-core-post-install", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the failed hook Job is still there (%v); Helm deletes it by its hook-failed policy", err)
	}
	// The stand-in garbage collector deletes the hook's pod with its Job, as a real one does.
	if err := kube.Poll(ctx, 50*time.Millisecond, 10*time.Second, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name"})
		return err == nil && len(pods.Items) == 0, err
	}); err != nil {
		t.Errorf("the hook's pod was not deleted with its Job: %v", err)
	}
	if rel := lastRelease(t, kc); rel.Info.Status != release.StatusFailed {
		t.Errorf("release status %s, want failed", rel.Info.Status)
	}
}

// jobStandIn stands in for the job controller and the garbage collector, which the test API
// server runs without. Each Job of KubeSphere's namespace gets one pod, labelled and owned as
// the job controller makes them; with complete set the pod succeeds and the Job completes,
// otherwise the pod's image cannot be pulled. The pods of a deleted Job are deleted.
type jobStandIn struct {
	complete atomic.Bool

	mu   sync.Mutex
	jobs []string // Jobs given a pod, in order
}

func (j *jobStandIn) ran() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.jobs)
}

func startJobStandIn(t *testing.T, cs kubernetes.Interface) *jobStandIn {
	j := &jobStandIn{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		seen := map[types.UID]bool{}
		for ctx.Err() == nil {
			j.step(ctx, t, cs, seen)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return j
}

func (j *jobStandIn) step(ctx context.Context, t *testing.T, cs kubernetes.Interface, seen map[types.UID]bool) {
	list, err := cs.BatchV1().Jobs(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	live := map[types.UID]bool{}
	for i := range list.Items {
		job := &list.Items[i]
		live[job.UID] = true
		if seen[job.UID] {
			continue
		}
		seen[job.UID] = true
		j.mu.Lock()
		j.jobs = append(j.jobs, job.Name)
		j.mu.Unlock()
		if err := j.run(ctx, cs, job); err != nil && ctx.Err() == nil {
			t.Errorf("standing in for the job controller on %s: %v", job.Name, err)
		}
	}
	pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name"})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		if len(p.OwnerReferences) == 1 && !live[p.OwnerReferences[0].UID] {
			cs.CoreV1().Pods(Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}
	}
}

func (j *jobStandIn) run(ctx context.Context, cs kubernetes.Interface, job *batchv1.Job) error {
	labels := map[string]string{"batch.kubernetes.io/job-name": job.Name, "job-name": job.Name,
		"batch.kubernetes.io/controller-uid": string(job.UID), "controller-uid": string(job.UID)}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-" + string(job.UID)[:5], Namespace: Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Spec: job.Spec.Template.Spec,
	}
	pod, err := cs.CoreV1().Pods(Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	c := pod.Spec.Containers[0]
	if !j.complete.Load() {
		pod.Status.Phase = corev1.PodPending
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: c.Name, Image: c.Image, State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "` + c.Image + `": not found`}}}}
		_, err = cs.CoreV1().Pods(Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	}
	pod.Status.Phase = corev1.PodSucceeded
	if _, err := cs.CoreV1().Pods(Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return err
	}
	now := metav1.Now()
	job.Status = batchv1.JobStatus{StartTime: &now, CompletionTime: &now, Succeeded: 1, Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}}
	_, err = cs.BatchV1().Jobs(Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{})
	return err
}
