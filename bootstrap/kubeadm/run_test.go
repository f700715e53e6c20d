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
	if !errors.As(err, &h) || !strings.Contains(h.Hint, "kubeadm token create") {
		t.Fatalf("want a token hint, got %v", err)
	}
}
