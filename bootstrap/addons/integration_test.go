package addons

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

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
	o := Options{Cluster: c, NodeTimeout: 3 * time.Second, Interval: 200 * time.Millisecond}

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
	if err := Run(ctx, s.Config, o); err != nil {
		t.Fatalf("Run with every node Ready: %v", err)
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
