package joinorder

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/apiserver"
)

// loopback maps the cluster file's addresses of the control planes the test stands in for to
// the harness's loopback endpoints, and every other address to a closed loopback port, so the
// test talks to loopback only. It records what was asked.
type loopback struct {
	mu     sync.Mutex
	to     map[string]string
	closed string
	asked  []string
}

func (l *loopback) resolve(hostport string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = append(l.asked, hostport)
	if to, ok := l.to[hostport]; ok {
		return to
	}
	return l.closed
}

func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// closedPort is a loopback host:port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestWaitAgainstAPIServer runs the wait against a real kube-apiserver and etcd (with TLS and
// client certificates of the etcd CA, as kubeadm runs them), the harness standing in for
// node1: its etcd is node1's member and its API server node1's. Without node1's Node the wait
// times out naming node1 and that alone; node3 also names node2, which is nowhere; once node1 is
// a Ready Node, node2's wait succeeds, also when node1's API server is reachable only through
// its mirror pod's status, and when node2 is itself an etcd member already.
func TestWaitAgainstAPIServer(t *testing.T) {
	s := apiserver.Start(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(s.Config)
	c := haCluster()
	l := &loopback{to: map[string]string{
		"192.168.0.11:2379": hostPort(t, s.EtcdURL),
		"192.168.0.11:6443": hostPort(t, s.URL),
	}, closed: closedPort(t)}
	wait := func(t *testing.T, c *cluster.Cluster, node string, timeout time.Duration) (string, error) {
		t.Helper()
		nc, err := cluster.NodeConfigFor(c, s.Secrets, node)
		if err != nil {
			t.Fatal(err)
		}
		var console bytes.Buffer
		var progress []string
		err = Wait(ctx, Options{Config: nc, Node: node, Endpoint: hostPort(t, s.URL), Timeout: timeout,
			Interval: 200 * time.Millisecond, CallTimeout: 2 * time.Second, Resolve: l.resolve, Console: &console,
			Progress: func(p string) { progress = append(progress, p) }})
		out := console.String()
		if strings.Contains(out, "BEGIN") || strings.Contains(out, "PRIVATE") {
			t.Errorf("the console shows key material:\n%s", out)
		}
		if err != nil && len(progress) == 0 {
			t.Error("no progress was reported")
		}
		t.Logf("console of %s:\n%s", node, out)
		return out, err
	}

	t.Run("no Node yet", func(t *testing.T) {
		out, err := wait(t, c, "node2", 2*time.Second)
		var nr *NotReadyError
		if !errors.As(err, &nr) {
			t.Fatalf("want a *NotReadyError, got %v", err)
		}
		if len(nr.Waiting) != 1 || nr.Waiting[0] != "node1: not a Node yet" {
			t.Errorf("waiting for %q, want only node1 as not a Node yet (its etcd and API server are healthy)", nr.Waiting)
		}
		if !strings.Contains(err.Error(), "node1: not a Node yet") {
			t.Errorf("error %q does not name node1", err)
		}
		if !strings.Contains(out, "ksboot: waiting for control plane node1: not a Node yet") {
			t.Errorf("no progress line for node1:\n%s", out)
		}
	})

	t.Run("node3 waits for node1 and node2", func(t *testing.T) {
		_, err := wait(t, c, "node3", 2*time.Second)
		var nr *NotReadyError
		if !errors.As(err, &nr) || len(nr.Waiting) != 2 {
			t.Fatalf("want node1 and node2 not ready, got %v", err)
		}
		got := nr.Waiting[1]
		for _, want := range []string{"node2: not a Node yet", "not an etcd member yet",
			"API server not healthy (/readyz at 192.168.0.12:6443", "mirror pod kube-apiserver-node2 does not exist yet"} {
			if !strings.Contains(got, want) {
				t.Errorf("node2's entry %q lacks %q", got, want)
			}
		}
	})

	setNodeReady(t, cs, "node1")

	t.Run("node1 ready", func(t *testing.T) {
		out, err := wait(t, c, "node2", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "the control planes before node2 are ready (node1") {
			t.Errorf("no success line:\n%s", out)
		}
	})

	t.Run("API server known only by its mirror pod", func(t *testing.T) {
		saved := l.to["192.168.0.11:6443"]
		l.mu.Lock()
		delete(l.to, "192.168.0.11:6443")
		l.mu.Unlock()
		defer func() { l.mu.Lock(); l.to["192.168.0.11:6443"] = saved; l.mu.Unlock() }()
		_, err := wait(t, c, "node2", time.Second)
		if err == nil || !strings.Contains(err.Error(), "mirror pod kube-apiserver-node1 does not exist yet") {
			t.Fatalf("want node1's API server reported unhealthy, got %v", err)
		}
		setMirrorPodReady(t, cs, "node1")
		if _, err := wait(t, c, "node2", 30*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("already an etcd member", func(t *testing.T) {
		// node2's join was cut short after kubeadm added its member: the harness's member
		// (peer URL on 127.0.0.1) stands for it too. node2 waits for node1 only.
		c := haCluster()
		c.Spec.Hosts[1].Address = "127.0.0.1/8"
		out, err := wait(t, c, "node2", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "node2 is already an etcd member") {
			t.Errorf("no line about node2's own membership:\n%s", out)
		}
	})

	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.asked {
		if !strings.HasPrefix(a, "192.168.0.11:") && !strings.HasPrefix(a, "192.168.0.12:") {
			t.Errorf("asked for %s, which is no earlier control plane's", a)
		}
	}
}

func setNodeReady(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	ctx := context.Background()
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		LastHeartbeatTime: now, LastTransitionTime: now}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// setMirrorPodReady creates the API server's mirror pod, as the kubelet does for the static
// pod, and marks it Ready.
func setMirrorPodReady(t *testing.T, cs kubernetes.Interface, node string) {
	t.Helper()
	ctx := context.Background()
	pod, err := cs.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-" + node, Namespace: "kube-system",
			Annotations: map[string]string{"kubernetes.io/config.mirror": "0123456789abcdef", "kubernetes.io/config.source": "file"}},
		Spec: corev1.PodSpec{NodeName: node, HostNetwork: true, Containers: []corev1.Container{
			{Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.37.2"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := cs.CoreV1().Pods("kube-system").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
