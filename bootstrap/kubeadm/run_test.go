package kubeadm

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
)

func runOptions(t *testing.T, node string, stub *hosttest.Stub) RunOptions {
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := cluster.NodeConfigFor(cluster.Sample(cluster.SampleOptions{}), s, node)
	if err != nil {
		t.Fatal(err)
	}
	p := ParamsFromNode(nc, node, "", "192.168.0.11:6443")
	p.Role = RoleFor(nc, false)
	return RunOptions{Root: host.Root(t.TempDir()), Exec: stub, Config: nc, Params: p,
		Sleep: func(context.Context, time.Duration) error { return nil }}
}

func TestInitPlacesPKIAndRunsOnce(t *testing.T) {
	stub := hosttest.NewStub(t)
	o := runOptions(t, "node1", stub)
	stub.RegisterDo(`^kubeadm init --config /etc/ksboot/kubeadm.yaml --skip-token-print --ignore-preflight-errors=NumCPU,Mem$`, kubeadmWrites(o.Root))
	o.IgnorePreflight = IgnoredPreflightChecks([]string{"cpu", "memory", "time"})
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if !o.Root.Exists("/etc/kubernetes/pki/ca.key") || !o.Root.Exists(RootKubeconfig) {
		t.Error("CA not placed or kubeconfig not copied")
	}
	cfg, _ := o.Root.ReadFile(ConfigPath)
	if !strings.Contains(string(cfg), "kind: InitConfiguration") {
		t.Errorf("config:\n%s", cfg)
	}
	// Once kubeadm has run, a second run (reboot) changes nothing and runs nothing.
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if len(stub.Calls) != 1 {
		t.Errorf("kubeadm ran again: %q", stub.Calls)
	}
}

// kubeadmWrites stands in for kubeadm init's files.
func kubeadmWrites(root host.Root) func() (string, error) {
	return func() (string, error) {
		for _, f := range []string{AdminConf, APIServerManif} {
			if _, err := root.WriteFile(f, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
				return "", err
			}
		}
		return "Your Kubernetes control-plane has initialized successfully!", nil
	}
}

// A failed init leaves kubeadm's files behind (admin.conf, static pod manifests). They are no
// proof of a cluster: the next run resets the node and initialises again, with the CA in place.
func TestInitAfterFailedInitResetsFirst(t *testing.T) {
	stub := hosttest.NewStub(t)
	o := runOptions(t, "node1", stub)
	stub.RegisterDo(`^kubeadm init `, func() (string, error) {
		_, _ = kubeadmWrites(o.Root)()
		return "error execution phase wait-control-plane: could not bootstrap the admin user", errors.New("exit status 1")
	})
	// A failed init reads the kubelet's journal for manifests it refused; here it refused none.
	stub.Allow(`^journalctl -u kubelet `, "")
	if err := Run(context.Background(), o); err == nil {
		t.Fatal("a failed init reported success")
	}
	if o.Root.Exists(DoneMarker) {
		t.Fatal("a failed init was recorded as done")
	}
	var console strings.Builder
	o.Console = &console
	stub.RegisterDo(`^kubeadm reset -f --cri-socket unix:///run/containerd/containerd.sock$`, func() (string, error) {
		// reset removes the PKI too; init must find the CA placed again.
		return "", os.RemoveAll(o.Root.Path("/etc/kubernetes"))
	})
	stub.RegisterDo(`^kubeadm init `, func() (string, error) {
		if !o.Root.Exists("/etc/kubernetes/pki/ca.key") {
			return "", errors.New("init ran without the cluster CA in place")
		}
		return kubeadmWrites(o.Root)()
	})
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(console.String(), "an earlier kubeadm run did not finish (/etc/kubernetes/admin.conf exists): kubeadm reset -f") {
		t.Errorf("console:\n%s", console.String())
	}
	if !o.Root.Exists(DoneMarker) {
		t.Error("the successful init was not recorded")
	}
}

func TestJoinRetriesWhileAPIUnreachable(t *testing.T) {
	stub := hosttest.NewStub(t)
	o := runOptions(t, "node2", stub)
	stub.Register(`^kubeadm join --config`, "error execution phase preflight: couldn't validate the identity of the API Server: dial tcp 192.168.0.11:6443: connect: connection refused", errors.New("exit status 1"))
	stub.Register(`^kubeadm reset -f --cri-socket`, "", nil)
	stub.Register(`^kubeadm join --config`, "This node has joined the cluster", nil)
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if o.Root.Exists("/etc/kubernetes/pki/ca.crt") {
		t.Error("a worker got a CA file (kubeadm's worker preflight refuses it)")
	}
}

func TestJoinStopsOnForeignCA(t *testing.T) {
	stub := hosttest.NewStub(t)
	o := runOptions(t, "node2", stub)
	stub.Register(`^kubeadm join --config`, "error execution phase preflight: couldn't validate the identity of the API Server: cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"sha256:aaa\" are pinned", errors.New("exit status 1"))
	err := Run(context.Background(), o)
	var h *workflow.Hinted
	if !errors.As(err, &h) || !strings.Contains(h.Hint, "another cluster") {
		t.Fatalf("want a CA-mismatch hint, got %v", err)
	}
}

func TestJoinStopsOnUnknownToken(t *testing.T) {
	stub := hosttest.NewStub(t)
	o := runOptions(t, "node2", stub)
	stub.Register(`^kubeadm join --config`, "error execution phase preflight: couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID \"abcdef\"", errors.New("exit status 1"))
	err := Run(context.Background(), o)
	var h *workflow.Hinted
	if !errors.As(err, &h) || !strings.Contains(h.Hint, "ksboot token rotate") || !strings.Contains(h.Hint, "rebuild the seed") {
		t.Fatalf("want a token hint, got %v", err)
	}
}

// TestPrepareRunsBeforeEveryAttempt: the Prepare hook (the agent's internal load balancer) runs
// before kubeadm init and before every join attempt, after the reset that empties
// /etc/kubernetes/manifests, so the static pods are in place whenever kubeadm starts the kubelet.
func TestPrepareRunsBeforeEveryAttempt(t *testing.T) {
	const manifest = ManifestsDir + "/haproxy.yaml"
	place := func(o *RunOptions, log *[]string) {
		o.Prepare = func(context.Context) error {
			*log = append(*log, "prepare")
			_, err := o.Root.WriteFile(manifest, []byte("kind: Pod\n"), 0o600)
			return err
		}
	}
	stub := hosttest.NewStub(t)
	o := runOptions(t, "node2", stub)
	var log []string
	place(&o, &log)
	joinSees := func() (string, error) {
		log = append(log, "join")
		if !o.Root.Exists(manifest) {
			return "", errors.New("join ran without the static pod in place")
		}
		return "error execution phase kubelet-start: timed out", errors.New("exit status 1")
	}
	stub.RegisterDo(`^kubeadm join --config`, joinSees)
	stub.RegisterDo(`^kubeadm reset -f --cri-socket`, func() (string, error) {
		log = append(log, "reset")
		return "", o.Root.Remove(manifest) // kubeadm reset empties the manifests directory
	})
	stub.RegisterDo(`^kubeadm join --config`, func() (string, error) {
		if _, err := joinSees(); err != nil && !o.Root.Exists(manifest) {
			return "", err
		}
		return "This node has joined the cluster", nil
	})
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(log, ","); got != "prepare,join,reset,prepare,join" {
		t.Errorf("order %s, want prepare before every join", got)
	}

	stub = hosttest.NewStub(t)
	o = runOptions(t, "node1", stub)
	log = nil
	place(&o, &log)
	stub.RegisterDo(`^kubeadm init `, func() (string, error) {
		if !o.Root.Exists(manifest) {
			return "", errors.New("init ran without the static pod in place")
		}
		return kubeadmWrites(o.Root)()
	})
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if len(log) != 1 {
		t.Errorf("prepare ran %d times for one init", len(log))
	}
}

// TestInitNamesRefusedManifests: when kubeadm init times out because the kubelet refused a
// static pod manifest (a patch made a probe without a handler), the hint says which and why.
func TestInitNamesRefusedManifests(t *testing.T) {
	stub := hosttest.NewStub(t)
	o := runOptions(t, "node1", stub)
	stub.Register(`^kubeadm init`, "[wait-control-plane] Waiting for the kubelet to boot up the control plane\ntimed out waiting for the condition", errors.New("exit status 1"))
	stub.Register(`^journalctl -u kubelet`, `E1206 20:27:41.154365 1160 file.go:187] "Could not process manifest file" err="invalid pod: [spec.containers[0].readinessProbe: Required value: must specify a handler type]" path="/etc/kubernetes/manifests/etcd.yaml"
E1206 20:28:00.954965 1160 file.go:187] "Could not process manifest file" err="invalid pod: [spec.containers[0].readinessProbe: Required value: must specify a handler type]" path="/etc/kubernetes/manifests/etcd.yaml"
E1206 20:28:00.955965 1160 file.go:187] "Could not process manifest file" err="invalid pod: [spec.containers[0].readinessProbe: Required value: must specify a handler type]" path="/etc/kubernetes/manifests/kube-scheduler.yaml"
`, nil)
	err := Run(context.Background(), o)
	var h *workflow.Hinted
	if !errors.As(err, &h) {
		t.Fatalf("want a hinted error, got %v", err)
	}
	for _, want := range []string{
		"the kubelet refused to run /etc/kubernetes/manifests/etcd.yaml (invalid pod: [spec.containers[0].readinessProbe: Required value: must specify a handler type]), /etc/kubernetes/manifests/kube-scheduler.yaml",
		"spec.kubernetes.patches",
	} {
		if !strings.Contains(h.Hint, want) {
			t.Errorf("hint lacks %q:\n%s", want, h.Hint)
		}
	}
}
