package addons

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/apiserver"
)

// managedKinds are the resources the addons step may write; the test lists them all to prove
// the step created exactly the expected objects and nothing else.
var managedKinds = []schema.GroupVersionResource{
	{Version: "v1", Resource: "namespaces"},
	{Version: "v1", Resource: "serviceaccounts"},
	{Version: "v1", Resource: "configmaps"},
	{Group: "apps", Version: "v1", Resource: "daemonsets"},
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	{Group: "storage.k8s.io", Version: "v1", Resource: "storageclasses"},
}

// appliedByKsboot lists "Kind namespace/name" → resourceVersion of every object whose managed
// fields name the ksboot field manager.
func appliedByKsboot(t *testing.T, dyn dynamic.Interface) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, gvr := range managedKinds {
		list, err := dyn.Resource(gvr).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatalf("listing %s: %v", gvr.Resource, err)
		}
		for i := range list.Items {
			u := &list.Items[i]
			for _, mf := range u.GetManagedFields() {
				if mf.Manager == kube.FieldManager {
					out[kube.Describe(u)] = u.GetResourceVersion()
					break
				}
			}
		}
	}
	return out
}

func describeAll(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, u := range objs {
		out = append(out, kube.Describe(u))
	}
	slices.Sort(out)
	return out
}

// setNode creates the node if needed and sets its Ready condition through the status
// subresource, as a kubelet would.
func setNode(t *testing.T, cs kubernetes.Interface, name string, ready corev1.ConditionStatus, reason, msg string) {
	t.Helper()
	ctx := context.Background()
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		n, err = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating node %s: %v", name, err)
		}
	}
	now := metav1.Now()
	n.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: ready, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting the status of node %s: %v", name, err)
	}
}

// TestRunAgainstAPIServer runs the step against a real API server: it creates exactly the
// Flannel and OpenEBS objects, labels nodes as they register, reports missing and NotReady
// nodes with the kubelet's reason on timeout, finishes once every node (generic workers
// included) is Ready, and changes nothing when run again.
func TestRunAgainstAPIServer(t *testing.T) {
	s := apiserver.Start(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(s.Config)
	dyn := dynamic.NewForConfigOrDie(s.Config)
	c := testCluster(t, func(c *cluster.Cluster) {
		c.Spec.Network.Plugin = "flannel"
		c.Spec.Hosts[1].Labels = map[string]string{"disk": "ssd"}
	})
	o := Options{Cluster: c, NodeTimeout: 3 * time.Second, StorageTimeout: 2 * time.Second, Interval: 200 * time.Millisecond}

	comps, err := Manifests(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var expected []*unstructured.Unstructured
	for _, comp := range comps {
		expected = append(expected, comp.Objects...)
	}

	const notReadyMsg = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
	setNode(t, cs, "node1", corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status")
	setNode(t, cs, "node2", corev1.ConditionFalse, "KubeletNotReady", notReadyMsg)

	start := time.Now()
	err = Run(ctx, s.Config, o)
	var nre *NodesNotReadyError
	if !errors.As(err, &nre) || !kube.IsTimeout(err) {
		t.Fatalf("Run with node3 missing and node2 NotReady = %v, want a NodesNotReadyError timeout", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Run took %s with a 3s node timeout", d)
	}
	for _, want := range []string{"not joined: node3", "node2 NotReady: KubeletNotReady: " + notReadyMsg} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	t.Logf("timeout diagnosis:\n%v", err)

	got := appliedByKsboot(t, dyn)
	var gotNames []string
	for k := range got {
		if !strings.HasPrefix(k, "Node ") {
			gotNames = append(gotNames, k)
		}
	}
	slices.Sort(gotNames)
	if want := describeAll(expected); !slices.Equal(gotNames, want) {
		t.Errorf("objects applied by ksboot:\n  %s\nwant exactly:\n  %s", strings.Join(gotNames, "\n  "), strings.Join(want, "\n  "))
	}

	labels := func(name string) map[string]string {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n.Labels
	}
	if l := labels("node1"); l[LabelControlPlane] != "" || !hasKey(l, LabelControlPlane) || hasKey(l, LabelWorker) {
		t.Errorf("node1 labels %v, want the control-plane label only", l)
	}
	if l := labels("node2"); !hasKey(l, LabelWorker) || l["disk"] != "ssd" {
		t.Errorf("node2 labels %v, want the worker label and disk=ssd", l)
	}

	// node3 joins, node2's network comes up, and a machine booted from the generic worker seed
	// registers: it is labelled and must be Ready too.
	setNode(t, cs, "node3", corev1.ConditionTrue, "KubeletReady", "")
	setNode(t, cs, "node2", corev1.ConditionTrue, "KubeletReady", "")
	setNode(t, cs, "worker-0a1b2c3d4e", corev1.ConditionFalse, "KubeletNotReady", notReadyMsg)
	err = Run(ctx, s.Config, o)
	if err == nil || !strings.Contains(err.Error(), "worker-0a1b2c3d4e NotReady") {
		t.Fatalf("Run with a NotReady generic worker = %v, want it reported", err)
	}
	if l := labels("worker-0a1b2c3d4e"); !hasKey(l, LabelWorker) {
		t.Errorf("generic worker labels %v, want the worker label", l)
	}
	setNode(t, cs, "worker-0a1b2c3d4e", corev1.ConditionTrue, "KubeletReady", "")

	// Every node is Ready, but no controller-manager runs, so OpenEBS's provisioner never
	// becomes available: the step waits for it, bounded, and says so.
	err = Run(ctx, s.Config, o)
	var we *kube.WaitError
	if !errors.As(err, &we) || !kube.IsTimeout(err) {
		t.Fatalf("Run with the OpenEBS provisioner unavailable = %v, want a timed-out *kube.WaitError", err)
	}
	if want := "deployment openebs/openebs-localpv-provisioner: NotAvailable"; !strings.Contains(err.Error(), want) {
		t.Errorf("error lacks %q:\n%v", want, err)
	}
	setDeploymentAvailable(t, cs, OpenEBSNamespace, OpenEBSDeployment)
	if err := Run(ctx, s.Config, o); err != nil {
		t.Fatalf("Run with every node Ready and OpenEBS available: %v", err)
	}

	// A finished cluster: running the step again must not change a single object.
	before := appliedByKsboot(t, dyn)
	nodesBefore := nodeVersions(t, cs)
	if err := Run(ctx, s.Config, o); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	after := appliedByKsboot(t, dyn)
	nodesAfter := nodeVersions(t, cs)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: resourceVersion %s → %s on re-apply", k, v, after[k])
		}
	}
	for k, v := range nodesBefore {
		if nodesAfter[k] != v {
			t.Errorf("Node %s: resourceVersion %s → %s on re-apply", k, v, nodesAfter[k])
		}
	}
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func nodeVersions(t *testing.T, cs kubernetes.Interface) map[string]string {
	t.Helper()
	nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range nodes.Items {
		out[n.Name] = n.ResourceVersion
	}
	return out
}

// TestCalicoAgainstAPIServer applies the fetched, verified and patched (fake) Calico manifest
// and checks what the API server stored.
func TestCalicoAgainstAPIServer(t *testing.T) {
	s := apiserver.Start(t)
	ctx := context.Background()
	srv, art := fakeCalico(t)
	c := testCluster(t, func(c *cluster.Cluster) {
		c.Spec.Storage.DefaultClass = "ceph-rbd" // no OpenEBS: only Calico is applied
		c.Spec.Registry.PrivateRegistry = "reg.local"
	})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	for _, n := range ExpectedNodes(c) {
		setNode(t, cs, n, corev1.ConditionTrue, "KubeletReady", "")
	}
	o := Options{Cluster: c, CalicoSource: HTTPSource{Client: srv.Client()}, CalicoArtifact: &art,
		NodeTimeout: 10 * time.Second, Interval: 200 * time.Millisecond}
	if err := Run(ctx, s.Config, o); err != nil {
		t.Fatal(err)
	}
	ds, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, "calico-node", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctr := ds.Spec.Template.Spec.Containers[0]
	var cidr string
	for _, e := range ctr.Env {
		if e.Name == "CALICO_IPV4POOL_CIDR" {
			cidr = e.Value
		}
	}
	if cidr != c.Spec.Network.KubePodsCIDR || ctr.Image != "reg.local/calico/node:v3.32.1" {
		t.Errorf("calico-node: CIDR %q image %q, want %q and the private registry", cidr, ctr.Image, c.Spec.Network.KubePodsCIDR)
	}
	if _, err := cs.StorageV1().StorageClasses().Get(ctx, OpenEBSStorageClass, metav1.GetOptions{}); err == nil {
		t.Error("OpenEBS was deployed although spec.storage.defaultClass names another class")
	}
}

// setDeploymentAvailable stands in for the deployment controller: it reports every replica of
// the Deployment's current generation available, through the status subresource.
func setDeploymentAvailable(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	ctx := context.Background()
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := int32(1)
	if d.Spec.Replicas != nil {
		n = *d.Spec.Replicas
	}
	d.Status = appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}},
	}
	if _, err := cs.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting the status of deployment %s/%s: %v", ns, name, err)
	}
}

// TestOpenEBSWaitAgainstAPIServer: the wait for the default storage times out while the
// provisioner is not available, naming the Deployment, the pod that cannot pull its image
// (with the image and what to do) and a StorageClass that lost its default mark; it finishes
// once the Deployment is available and the class is the default again.
func TestOpenEBSWaitAgainstAPIServer(t *testing.T) {
	s := apiserver.Start(t)
	ctx := context.Background()
	kc, err := kube.New(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	cs := kc.Clientset
	c := testCluster(t, nil)
	objs, err := OpenEBS(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.Apply(ctx, objs); err != nil {
		t.Fatal(err)
	}
	const interval, timeout = 200 * time.Millisecond, 1500 * time.Millisecond

	// No controller-manager: stand in for the ReplicaSet with a pod whose image cannot be pulled.
	pod, err := cs.CoreV1().Pods(OpenEBSNamespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: OpenEBSDeployment + "-6f7d9c-x2k4q", Labels: map[string]string{"name": OpenEBSDeployment}},
		Spec: corev1.PodSpec{ServiceAccountName: openEBSServiceAccount, NodeName: "node1", Containers: []corev1.Container{
			{Name: "openebs-provisioner-hostpath", Image: OpenEBSProvisionerImage},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodPending
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "openebs-provisioner-hostpath", Image: OpenEBSProvisionerImage,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "ImagePullBackOff", Message: `Back-off pulling image "` + OpenEBSProvisionerImage + `"`,
		}},
	}}
	if _, err := cs.CoreV1().Pods(OpenEBSNamespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Someone else unmarked the class (another tool made its own class the default).
	sc, err := cs.StorageV1().StorageClasses().Get(ctx, OpenEBSStorageClass, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc.Annotations[defaultStorageClassLabel] = "false"
	if _, err := cs.StorageV1().StorageClasses().Update(ctx, sc, metav1.UpdateOptions{FieldManager: "someone-else"}); err != nil {
		t.Fatal(err)
	}

	var progress []string
	start := time.Now()
	err = WaitOpenEBS(ctx, cs, interval, timeout, func(ps []kube.Problem) { progress = append(progress, problemsText(ps)) })
	var we *kube.WaitError
	if !errors.As(err, &we) || !kube.IsTimeout(err) {
		t.Fatalf("WaitOpenEBS = %v, want a timed-out *kube.WaitError", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("WaitOpenEBS took %s with a %s timeout", d, timeout)
	}
	for _, want := range []string{
		"waiting for " + OpenEBSWaitWhat,
		"deployment openebs/openebs-localpv-provisioner: NotAvailable (not processed by the deployment controller yet; is kube-controller-manager running?)",
		`storageclass openebs-hostpath: NotDefault (annotation storageclass.kubernetes.io/is-default-class="false"`,
		"pod openebs/openebs-localpv-provisioner-6f7d9c-x2k4q: ImagePullBackOff docker.io/openebs/provisioner-localpv:4.4.0",
		"could not pull docker.io/openebs/provisioner-localpv:4.4.0",
		"spec.registry.privateRegistry",
		"ksboot agent phase addons",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	t.Logf("timeout diagnosis:\n%v", err)
	if len(progress) != 1 || !strings.Contains(progress[0], "deployment openebs/openebs-localpv-provisioner: NotAvailable") {
		t.Errorf("progress reports %q, want one naming the Deployment", progress)
	}

	// Without a pull problem, the advice points at the pods and events instead.
	if err := cs.CoreV1().Pods(OpenEBSNamespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	err = WaitOpenEBS(ctx, cs, interval, timeout, nil)
	if err == nil || !strings.Contains(err.Error(), "kubectl -n openebs describe pods -l name=openebs-localpv-provisioner") ||
		strings.Contains(err.Error(), "could not pull") {
		t.Errorf("WaitOpenEBS without pods = %v, want the describe advice", err)
	}

	// Available, but the class is still not the default: not done.
	setDeploymentAvailable(t, cs, OpenEBSNamespace, OpenEBSDeployment)
	err = WaitOpenEBS(ctx, cs, interval, timeout, nil)
	if err == nil || strings.Contains(err.Error(), "deployment openebs/openebs-localpv-provisioner: ") || !strings.Contains(err.Error(), "NotDefault") {
		t.Fatalf("WaitOpenEBS with the class unmarked = %v, want only the StorageClass reported", err)
	}
	// The step's apply takes the annotation back (forced server-side apply).
	if err := kc.Apply(ctx, objs); err != nil {
		t.Fatal(err)
	}
	if err := WaitOpenEBS(ctx, cs, interval, timeout, nil); err != nil {
		t.Fatalf("WaitOpenEBS with the provisioner available and the class default: %v", err)
	}
}

// TestCalicoRealStructureAgainstAPIServer applies a manifest with the structure of upstream's
// calico.yaml, patched for a private registry, to a real API server by server-side apply, twice:
// every object is stored (the CustomResourceDefinitions with the schema they were written
// with), calico-node has the pool CIDR, the address detection method and the registry's
// images, init containers included, and the second apply changes no object.
func TestCalicoRealStructureAgainstAPIServer(t *testing.T) {
	s := apiserver.Start(t)
	ctx := context.Background()
	c := testCluster(t, func(c *cluster.Cluster) {
		c.Spec.Network.KubePodsCIDR = "10.233.64.0/18"
		c.Spec.Registry.PrivateRegistry = "reg.local"
	})
	manifest := readCalicoStructure(t)
	art := serveCalico(t, "calico-"+CalicoVersion+".yaml", manifest)
	objs, err := Calico(ctx, c, HTTPSource{}, art)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := kube.ParseYAML(art.Name, manifest)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kube.New(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	versions := func() map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, u := range objs {
			live, err := kc.Get(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			out[kube.Describe(u)] = live.GetResourceVersion()
		}
		return out
	}

	if err := kc.Apply(ctx, objs); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	first := versions()
	if len(first) != len(objs) {
		t.Fatalf("%d objects stored, %d applied", len(first), len(objs))
	}
	if err := kc.Apply(ctx, objs); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	for k, v := range versions() {
		if first[k] != v {
			t.Errorf("%s: resourceVersion %s → %s on the second apply", k, first[k], v)
		}
	}

	for i, u := range orig {
		if u.GetKind() != "CustomResourceDefinition" {
			continue
		}
		live, err := kc.Get(ctx, objs[i])
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
		got, _, _ := unstructured.NestedSlice(live.Object, "spec", "versions")
		// Compared as JSON: the manifest's numbers parse as float64, the server's as int64.
		wantSchema, _ := json.Marshal(want[0].(map[string]any)["schema"])
		gotSchema, _ := json.Marshal(got[0].(map[string]any)["schema"])
		if string(gotSchema) != string(wantSchema) {
			t.Errorf("%s: stored schema differs from the manifest's:\n%s\nwant\n%s", kube.Describe(u), gotSchema, wantSchema)
		}
	}
	// The pool the API server now serves accepts the cluster's CIDR (calico-node would create
	// this object from CALICO_IPV4POOL_CIDR on its first start).
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
		"metadata": map[string]any{"name": "default-ipv4-ippool"},
		"spec":     map[string]any{"cidr": c.Spec.Network.KubePodsCIDR, "ipipMode": "Always", "natOutgoing": true, "blockSize": int64(26)},
	}}
	if err := kc.ApplyOne(ctx, pool); err != nil {
		t.Fatalf("applying an IPPool of the applied CRD: %v", err)
	}

	ds, err := kc.Clientset.AppsV1().DaemonSets("kube-system").Get(ctx, "calico-node", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, ctr := range append(ds.Spec.Template.Spec.InitContainers, ds.Spec.Template.Spec.Containers...) {
		images = append(images, ctr.Name+"="+ctr.Image)
	}
	if want := []string{
		"upgrade-ipam=reg.local/calico/cni:v3.28.2", "install-cni=reg.local/calico/cni:v3.28.2",
		"mount-bpffs=reg.local/calico/node:v3.28.2", "calico-node=reg.local/calico/node:v3.28.2",
	}; !slices.Equal(images, want) {
		t.Errorf("stored calico-node images %v, want %v", images, want)
	}
	env := map[string][]string{}
	for _, e := range ds.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = append(env[e.Name], e.Value)
	}
	for name, want := range map[string]string{"CALICO_IPV4POOL_CIDR": "10.233.64.0/18", "IP_AUTODETECTION_METHOD": CalicoIPAutodetection, "IP": "autodetect"} {
		if !slices.Equal(env[name], []string{want}) {
			t.Errorf("stored calico-node %s = %q, want %q", name, env[name], want)
		}
	}
	kcd, err := kc.Clientset.AppsV1().Deployments("kube-system").Get(ctx, "calico-kube-controllers", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := kcd.Spec.Template.Spec.Containers[0].Image; img != "reg.local/calico/kube-controllers:v3.28.2" {
		t.Errorf("stored calico-kube-controllers image %s", img)
	}
}
