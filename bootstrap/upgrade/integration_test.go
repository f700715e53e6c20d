package upgrade_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/bootstrap/follow"
	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/upgrade"
	"github.com/ksboot/ksboot/test/apiserver"
	"github.com/ksboot/ksboot/test/testpki"
)

const from, target = "v1.26.5", "v1.27.16"

// machines stands in for the nodes' commands: it logs them in the order they run, fails the
// first `kubeadm upgrade node` of failOnce, and on `systemctl restart kubelet` reports the new
// kubelet's version on the Node, as the restarted kubelet would.
type machines struct {
	mu       sync.Mutex
	log      []string
	admin    kubernetes.Interface
	failOnce string
	failed   bool
	// apiAway: the control plane's API server is away once right after its kubelet restarts.
	apiAway bool
}

// adminOf is cp1's admin.conf client; the first call after its kubelet restarted fails, as
// when the new kubelet restarts the static pods.
func (m *machines) adminOf() (kubernetes.Interface, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.apiAway {
		m.apiAway = false
		return nil, errors.New("dial tcp 10.77.0.10:6443: connect: connection refused")
	}
	return m.admin, nil
}

type machine struct {
	m    *machines
	node string
}

func (r machine) Run(ctx context.Context, c host.Cmd) ([]byte, error) {
	r.m.mu.Lock()
	line := r.node + ": " + c.String()
	r.m.log = append(r.m.log, line)
	fail := r.node == r.m.failOnce && !r.m.failed && strings.HasPrefix(c.String(), "kubeadm upgrade node")
	if fail {
		r.m.failed = true
	}
	r.m.mu.Unlock()
	if fail {
		return []byte("[upgrade] FATAL: simulated"), errors.New("exit status 1")
	}
	if c.String() == "systemctl restart kubelet" {
		if r.node == "cp1" {
			r.m.mu.Lock()
			r.m.apiAway = true
			r.m.mu.Unlock()
		}
		return nil, setKubelet(ctx, r.m.admin, r.node, target)
	}
	return nil, nil
}

func (m *machines) lines() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.log)
}

func setKubelet(ctx context.Context, cs kubernetes.Interface, node, version string) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	n.Status.NodeInfo.KubeletVersion = version
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

// TestUpgradeThroughTheCluster: `ksboot upgrade --to` refuses what the skew rules forbid and
// records the plan; each node's agent, with its kubelet's identity under the real Node
// authorizer and the Role the request grants, upgrades itself in turn: kubeadm upgrade apply on
// the control plane, then each worker's kubeadm upgrade node, drained by the control plane's
// agent and uncordoned after its kubelet came back at the target. A worker's failure holds up
// the one after it until its retry succeeds; one node at a time holds the turn. The server runs
// the NodeRestriction admission plugin, as kubeadm's does.
func TestUpgradeThroughTheCluster(t *testing.T) {
	s := apiserver.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(s.Config)
	if _, err := cs.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-config", Namespace: "kube-system"},
		Data: map[string]string{"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nkubernetesVersion: " + from + "\n"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cp1", "w1", "w2"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if name == "cp1" {
			n.Labels = map[string]string{"node-role.kubernetes.io/control-plane": ""}
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := setKubelet(ctx, cs, name, from); err != nil {
			t.Fatal(err)
		}
	}
	// An unmanaged pod on w1: the drain deletes it (kubectl drain --force, KubeKey's flags).
	// (No controller manager runs here to make the namespace's default ServiceAccount.)
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"},
		// No kubelet runs here to finish a graceful deletion: the pod's own grace period, which
		// the drain uses, is zero.
		Spec: corev1.PodSpec{NodeName: "w1", TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{{Name: "app", Image: "app"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The skew rules.
	for to, want := range map[string]string{
		"v1.28.15": "one minor at a time",
		"v1.26.0":  "does not downgrade",
		"v1.99.0":  "v1.99",
		"1.27.16":  "not a version",
	} {
		if _, err := upgrade.Request(ctx, cs, upgrade.RequestOptions{To: to}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--to %s: %v, want an error saying %q", to, err, want)
		}
	}
	// Before any request a kubelet may not read the plan; that is no plan.
	kubeconfigs := map[string]string{}
	for _, name := range []string{"cp1", "w1", "w2"} {
		kubeconfigs[name] = filepath.Join(t.TempDir(), "kubelet.conf")
		testpki.ClientKubeconfig(t, s.Secrets, s.URL, kubeconfigs[name], "system:node:"+name, "system:nodes")
	}
	w1, err := kubeadm.ClientFromKubeconfig(kubeconfigs["w1"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w1.CoreV1().ConfigMaps("kube-system").Get(ctx, upgrade.Name, metav1.GetOptions{}); !apierrors.IsForbidden(err) && !apierrors.IsNotFound(err) {
		t.Errorf("a kubelet read the plan before any grant: %v", err)
	}

	plan, err := upgrade.Request(ctx, cs, upgrade.RequestOptions{To: target})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plan.Order, []string{"cp1", "w1", "w2"}) || plan.From != from {
		t.Fatalf("plan %+v", plan)
	}
	if _, err := upgrade.Request(ctx, cs, upgrade.RequestOptions{To: "v1.27.0"}); err == nil || !strings.Contains(err.Error(), "under way") {
		t.Errorf("another target while one is under way: %v", err)
	}
	// The grant is by name: a kubelet reads the plan, and nothing else in kube-system.
	if got, err := upgrade.GetPlan(ctx, w1); err != nil || got == nil || got.Target != target {
		t.Fatalf("w1 reads the plan: %+v, %v", got, err)
	}
	if _, err := w1.CoreV1().ConfigMaps("kube-system").Get(ctx, "kubeadm-config", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("w1 read kubeadm-config: %v (want Forbidden: the grant names one ConfigMap)", err)
	}

	m := &machines{admin: cs, failOnce: "w1"}
	var installsMu sync.Mutex
	installs := map[string]string{}
	var agents sync.WaitGroup
	defer agents.Wait()
	defer cancel()
	for _, name := range []string{"cp1", "w1", "w2"} {
		uo := upgrade.NodeOptions{Node: name, ControlPlane: name == "cp1", Exec: machine{m, name}, IgnorePreflight: []string{"NumCPU"},
			Poll: 50 * time.Millisecond, WaitTimeout: 30 * time.Second, DrainTimeout: 20 * time.Second, RetryAfter: 3 * time.Second,
			Install: func(_ context.Context, version string) error {
				installsMu.Lock()
				defer installsMu.Unlock()
				installs[name] = version
				return nil
			},
			Images: func(ctx context.Context, version string) error {
				_, err := machine{m, name}.Run(ctx, host.Cmd{Name: "import-images", Args: []string{version}})
				return err
			}}
		if name == "cp1" {
			uo.Admin = m.adminOf
			uo.PatchesDir = kubeadm.PatchesDir
		}
		kubeconfig := kubeconfigs[name]
		agents.Add(1)
		go func() {
			defer agents.Done()
			err := follow.Follow(ctx, follow.Options{Node: name, Interval: 100 * time.Millisecond,
				Client: func() (kubernetes.Interface, error) { return kubeadm.ClientFromKubeconfig(kubeconfig) },
				Reset:  func(context.Context) error { t.Error("reset without a request"); return nil },
				Upgrade: func(ctx context.Context, cs kubernetes.Interface, _ *corev1.Node) error {
					return upgrade.Follow(ctx, cs, uo)
				}})
			if err != nil {
				t.Errorf("agent of %s: %v", name, err)
			}
		}()
	}

	sawHeldUp := false
	var nodes []upgrade.NodeState
	deadline := time.Now().Add(90 * time.Second)
	for {
		var p *upgrade.Plan
		if p, nodes, err = upgrade.State(ctx, cs); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.Node == "w2" && strings.Contains(n.Status.Detail, "for w1 (failed: kubeadm upgrade node") {
				sawHeldUp = true
			}
		}
		if upgrade.Finished(p, nodes) {
			break
		}
		if time.Now().After(deadline) {
			var table strings.Builder
			upgrade.WriteTable(&table, p, nodes, time.Now())
			t.Fatalf("not finished after 90 s:\n%s\ncommands:\n%s", table.String(), strings.Join(m.lines(), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var table strings.Builder
	upgrade.WriteTable(&table, plan, nodes, time.Now())
	t.Logf("status:\n%s", table.String())
	cancel()
	agents.Wait()
	ctx = context.Background()

	// Each node's commands, and the nodes one after the other.
	want := map[string][]string{
		"cp1": {"import-images " + target, "kubeadm upgrade apply " + target + " --yes --ignore-preflight-errors=NumCPU,CreateJob --patches " + kubeadm.PatchesDir, "systemctl daemon-reload", "systemctl restart kubelet"},
		"w1":  {"import-images " + target, "kubeadm upgrade node --ignore-preflight-errors=NumCPU", "kubeadm upgrade node --ignore-preflight-errors=NumCPU", "systemctl daemon-reload", "systemctl restart kubelet"},
		"w2":  {"import-images " + target, "kubeadm upgrade node --ignore-preflight-errors=NumCPU", "systemctl daemon-reload", "systemctl restart kubelet"},
	}
	log := m.lines()
	last := map[string]int{}
	for node, cmds := range want {
		var got []string
		for i, l := range log {
			if c, ok := strings.CutPrefix(l, node+": "); ok {
				got = append(got, c)
				last[node] = i
			}
		}
		if !slices.Equal(got, cmds) {
			t.Errorf("%s ran %q, want %q", node, got, cmds)
		}
	}
	// Every node imports the new release's images ahead of its turn, and before the first
	// control plane's kubeadm upgrade apply moves kube-proxy and CoreDNS to them; the
	// upgrades themselves follow one another.
	at := func(node, prefix string) int {
		return slices.IndexFunc(log, func(l string) bool { return strings.HasPrefix(l, node+": "+prefix) })
	}
	apply := at("cp1", "kubeadm upgrade apply")
	for _, n := range []string{"cp1", "w1", "w2"} {
		if i := at(n, "import-images"); i < 0 || i > apply {
			t.Errorf("%s imported the images at %d, cp1 ran kubeadm upgrade apply at %d:\n%s", n, i, apply, strings.Join(log, "\n"))
		}
	}
	if !(last["cp1"] < at("w1", "kubeadm") && last["w1"] < at("w2", "kubeadm")) {
		t.Errorf("nodes overlapped or ran out of order:\n%s", strings.Join(log, "\n"))
	}
	if !sawHeldUp {
		t.Error("w2 never reported waiting for the failed w1")
	}
	for _, name := range []string{"cp1", "w1", "w2"} {
		if installs[name] != target {
			t.Errorf("%s installed %q, want %s", name, installs[name], target)
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Spec.Unschedulable || n.Status.NodeInfo.KubeletVersion != target {
			t.Errorf("%s: unschedulable %v, kubelet %s", name, n.Spec.Unschedulable, n.Status.NodeInfo.KubeletVersion)
		}
	}
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the pod on w1 was not drained away: %v", err)
	}
	if cm, err := cs.CoreV1().ConfigMaps(upgrade.Namespace).Get(ctx, upgrade.Name, metav1.GetOptions{}); err != nil || cm.Data["holder"] != "" {
		t.Errorf("the turn was not given up: holder %q, %v", cm.Data["holder"], err)
	}
}
