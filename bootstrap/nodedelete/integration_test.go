package nodedelete_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ksboot/ksboot/bootstrap/follow"
	"github.com/ksboot/ksboot/bootstrap/joinorder"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/nodedelete"
	"github.com/ksboot/ksboot/test/apiserver"
	"github.com/ksboot/ksboot/test/testpki"
)

// TestDeleteAgainstAPIServer runs node delete against a real kube-apiserver and etcd (TLS,
// client certificates of the etcd CA, as kubeadm's stacked etcd): eviction, PodDisruptionBudgets,
// the reset handshake through the Node's annotations, and etcd's member API are the real ones.
func TestDeleteAgainstAPIServer(t *testing.T) {
	s := apiserver.Start(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(s.Config)
	// No controller manager runs: the ServiceAccount admission needs the namespace's default.
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	node(t, cs, "cp1", "127.0.0.1", true, true)

	t.Run("worker: drained, reset by its agent, deleted", func(t *testing.T) {
		node(t, cs, "w1", "127.0.0.21", false, true)
		ds, err := cs.AppsV1().DaemonSets("default").Create(ctx, &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "agent"},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod(t, cs, "w1", "bare", nil, nil)
		pod(t, cs, "w1", "ds-pod", map[string]string{"app": "agent"}, &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet",
			Name: ds.Name, UID: ds.UID, Controller: ptr.To(true)})
		pod(t, cs, "w2-elsewhere", "other", nil, nil)

		// The machine's agent (package follow), with only the kubelet's identity: the Node
		// authorizer must let it read and annotate its own Node.
		kubeconfig := filepath.Join(t.TempDir(), "kubelet.conf")
		testpki.ClientKubeconfig(t, s.Secrets, s.URL, kubeconfig, "system:node:w1", "system:nodes")
		agentCtx, stop := context.WithCancel(ctx)
		defer stop()
		resets := make(chan struct{}, 1)
		agentDone := make(chan error, 1)
		go func() {
			agentDone <- follow.Follow(agentCtx, follow.Options{Node: "w1", Interval: 200 * time.Millisecond,
				Client: func() (kubernetes.Interface, error) { return kubeadm.ClientFromKubeconfig(kubeconfig) },
				Reset:  func(context.Context) error { resets <- struct{}{}; return nil }})
		}()
		var progress strings.Builder
		res, err := nodedelete.Delete(ctx, nodedelete.Options{Client: cs, Node: "w1", GracePeriod: 0, DrainTimeout: 30 * time.Second, ResetWait: 30 * time.Second, Progress: &progress})
		t.Logf("progress:\n%s", progress.String())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Evicted, []string{"default/bare"}) {
			t.Errorf("evicted %v, want the bare pod alone (DaemonSet pods stay, pods of other nodes are not touched)", res.Evicted)
		}
		if !res.ResetAcknowledged || !res.NodeDeleted || res.ControlPlane {
			t.Errorf("result %+v: want the reset asked, acknowledged and the Node deleted", res)
		}
		select {
		case err := <-agentDone:
			if !errors.Is(err, follow.ErrReset) || len(resets) != 1 {
				t.Errorf("the agent returned %v after %d resets, want ErrReset after one", err, len(resets))
			}
		case <-time.After(30 * time.Second):
			t.Error("the agent did not return after the reset")
		}
		if _, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Node w1 still there (err %v)", err)
		}
		if _, err := cs.CoreV1().Pods("default").Get(ctx, "other", metav1.GetOptions{}); err != nil {
			t.Errorf("a pod of another node was touched: %v", err)
		}
	})

	t.Run("drain blocked by a PodDisruptionBudget names it and keeps the Node", func(t *testing.T) {
		node(t, cs, "w3", "127.0.0.23", false, true)
		pod(t, cs, "w3", "guarded", map[string]string{"app": "guarded"}, nil)
		pdb, err := cs.PolicyV1().PodDisruptionBudgets("default").Create(ctx, &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "keep-one"},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The status kube-controller-manager's disruption controller gives it (none runs here;
		// the eviction API holds an eviction for a budget it has not processed yet).
		pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
		if _, err := cs.PolicyV1().PodDisruptionBudgets("default").UpdateStatus(ctx, pdb, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err = nodedelete.Delete(ctx, nodedelete.Options{Client: cs, Node: "w3", DrainTimeout: 3 * time.Second, ResetWait: time.Second})
		if err == nil || !strings.Contains(err.Error(), "pod default/guarded") || !strings.Contains(err.Error(), "PodDisruptionBudget default/keep-one") {
			t.Fatalf("error %v: want the blocking pod and its PodDisruptionBudget named", err)
		}
		n, gerr := cs.CoreV1().Nodes().Get(ctx, "w3", metav1.GetOptions{})
		if gerr != nil || !n.Spec.Unschedulable || n.Annotations[nodedelete.ResetRequestedAnnotation] != "" {
			t.Errorf("after a blocked drain: Node %v (err %v): want it kept, cordoned, and no reset asked", n, gerr)
		}
	})

	t.Run("an agent that does not answer keeps the Node", func(t *testing.T) {
		node(t, cs, "w4", "127.0.0.24", false, true)
		_, err := nodedelete.Delete(ctx, nodedelete.Options{Client: cs, Node: "w4", ResetWait: 2 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "agent reset --yes") {
			t.Fatalf("error %v: want the wait to fail saying how to reset by hand", err)
		}
		n, gerr := cs.CoreV1().Nodes().Get(ctx, "w4", metav1.GetOptions{})
		if gerr != nil || !n.Spec.Unschedulable || n.Annotations[nodedelete.ResetRequestedAnnotation] == "" {
			t.Errorf("Node %v (err %v): want it kept, cordoned, with the request on it", n, gerr)
		}
	})

	t.Run("control plane: etcd member removed; the last one refused", func(t *testing.T) {
		tlsConf, err := joinorder.EtcdClientTLS(string(s.Secrets.EtcdCACert), string(s.Secrets.EtcdCAKey), time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.EtcdURL}, TLS: tlsConf, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cli.Close() }()
		// A learner never votes, so the one-member test etcd keeps its quorum; it has no name
		// until it starts, so it is found by the peer URL of the Node's InternalIP.
		added, err := cli.MemberAddAsLearner(ctx, []string{"https://127.0.0.9:2380"})
		if err != nil {
			t.Fatal(err)
		}
		node(t, cs, "cp2", "127.0.0.9", true, false) // powered off: not Ready, not asked
		res, err := nodedelete.Delete(ctx, nodedelete.Options{Client: cs, Node: "cp2", EtcdTLS: tlsConf, EtcdEndpoints: []string{s.EtcdURL}})
		if err != nil {
			t.Fatal(err)
		}
		if !res.ControlPlane || res.ResetSkipped == "" || !res.NodeDeleted || !strings.HasPrefix(res.EtcdMember, "removed") {
			t.Errorf("result %+v: want a control plane, not asked to reset, deleted, its member removed", res)
		}
		list, err := cli.MemberList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range list.Members {
			if m.ID == added.Member.ID {
				t.Errorf("etcd member %x is still listed", m.ID)
			}
		}

		_, err = nodedelete.Delete(ctx, nodedelete.Options{Client: cs, Node: "cp1", EtcdTLS: tlsConf, EtcdEndpoints: []string{s.EtcdURL}})
		if err == nil || !strings.Contains(err.Error(), "only control plane") {
			t.Errorf("deleting the last control plane: error %v, want a refusal", err)
		}
		if _, err := cs.CoreV1().Nodes().Get(ctx, "cp1", metav1.GetOptions{}); err != nil {
			t.Errorf("cp1: %v", err)
		}
	})
}

func node(t *testing.T, cs kubernetes.Interface, name, ip string, controlPlane, ready bool) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	if controlPlane {
		n.Labels["node-role.kubernetes.io/control-plane"] = ""
	}
	n, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.Now()
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: now, LastTransitionTime: now}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func pod(t *testing.T, cs kubernetes.Interface, nodeName, name string, labels map[string]string, owner *metav1.OwnerReference) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	p, err := cs.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Running and ready, as a kubelet reports it: the eviction API lets a Pending pod go
	// whatever its PodDisruptionBudget says.
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
