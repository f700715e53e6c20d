package kubeadm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/apiserver"
	"github.com/ksboot/ksboot/versions"
)

// TestKubeadmJoinDryRun runs each judged release's `kubeadm join --dry-run` on the join
// configurations ksboot renders for a worker, a generic worker and a control plane, against a
// real kube-apiserver on loopback that holds what `kubeadm init` would have put there: the
// kubeadm and kubelet configuration (uploaded by that release's own `kubeadm init phase
// upload-config`), the bootstrap token with its RBAC and the cluster-info ConfigMap (its
// `init phase bootstrap-token`). kubeadm before v1.37 discovers the cluster for real even in a
// dry run, so this is the token, the CA pin and the TLS bootstrap of a real join, judged by
// the kubeadm the node will run; only what it would write and start stays out.
//
// The JWS signature of cluster-info is what the bootstrap signer of kube-controller-manager
// adds in a real cluster; the test adds it with k8s.io/cluster-bootstrap, as that controller
// does.
func TestKubeadmJoinDryRun(t *testing.T) {
	forEachJudged(t, func(t *testing.T, version, kubeadm string) {
		srv := apiserver.Start(t)
		keepHostKubernetes(t)
		c := haCluster()
		c.Spec.Kubernetes.Version = version
		initNC, err := cluster.NodeConfigFor(c, srv.Secrets, "node1")
		if err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		if _, err := WritePKI(root, initNC.Secrets); err != nil {
			t.Fatal(err)
		}
		endpoint := strings.TrimPrefix(srv.URL, "https://")
		ip := ParamsFromNode(initNC, "", "", "")
		ip.CertificatesDir = filepath.Join(root, PKIDir)
		// The cluster's endpoint is the test server, so that nothing kubeadm reads from the
		// uploaded ClusterConfiguration sends it to a name it would resolve off the host.
		ip.ControlPlaneEndpoint = endpoint
		initCfg := writeConfig(t, t.TempDir(), ip)
		// upload-config annotates the init node's Node object, which its kubelet would have
		// registered by then.
		registerNode(t, srv, "node1")
		for _, phase := range [][]string{{"upload-config", "kubeadm"}, {"upload-config", "kubelet"}, {"bootstrap-token"}} {
			args := append(append([]string{"init", "phase"}, phase...), "--config", initCfg, "--kubeconfig", srv.Kubeconfig)
			if out, err := runKubeadm(t, kubeadm, nil, args...); err != nil {
				t.Fatalf("kubeadm %s %s: %v\n%s", version, strings.Join(args, " "), err, out)
			}
		}
		signClusterInfo(t, srv, srv.Secrets.BootstrapToken)

		for _, tc := range []struct {
			name, host, nodeName string
			want                 string
			// skip lists phases the test server cannot serve: check-etcd asks the
			// cluster's stacked etcd members (static pods of earlier control planes,
			// which a bare API server has not) for their health.
			skip string
		}{
			{"worker", "node4", "", "This node has joined the cluster", ""},
			{"generic-worker", "", "worker-5254000000aa", "This node has joined the cluster", ""},
			{"control-plane", "node2", "", "a new control plane instance was created", "check-etcd"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var nc *cluster.NodeConfig
				if tc.host == "" {
					nc, err = cluster.GenericWorkerConfig(c, srv.Secrets)
				} else {
					nc, err = cluster.NodeConfigFor(c, srv.Secrets, tc.host)
				}
				if err != nil {
					t.Fatal(err)
				}
				jp := ParamsFromNode(nc, tc.nodeName, "", endpoint)
				cfg := writeConfig(t, t.TempDir(), jp)
				args := []string{"join", "--dry-run", "--config", cfg, "--ignore-preflight-errors=all"}
				skip := tc.skip
				if skip != "" && versions.MustLookup(version).Minor < 37 {
					// Before v1.37 the dry run of control-plane-join/etcd still looks up the
					// etcd members from their static pods and dials them to add this one;
					// v1.37 prints what it would do instead, so only there the phase runs.
					skip += ",control-plane-join/etcd"
				}
				if skip != "" {
					args = append(args, "--skip-phases="+skip)
				}
				out, err := runKubeadm(t, kubeadm, nil, args...)
				if err != nil {
					t.Fatalf("kubeadm %s join --dry-run (%s): %v\n%s", version, tc.name, err, out)
				}
				noStrictComplaints(t, out)
				if !strings.Contains(out, tc.want) {
					t.Errorf("kubeadm %s join --dry-run (%s) output lacks %q:\n%s", version, tc.name, tc.want, out)
				}
			})
		}
		// A join pinned to another CA is refused: the pin is really checked.
		t.Run("foreign-pin", func(t *testing.T) {
			nc, err := cluster.NodeConfigFor(c, srv.Secrets, "node4")
			if err != nil {
				t.Fatal(err)
			}
			jp := ParamsFromNode(nc, "", "", endpoint)
			jp.CACertHashes = []string{testPin}
			cfg := writeConfig(t, t.TempDir(), jp)
			out, err := runKubeadm(t, kubeadm, nil, "join", "--dry-run", "--config", cfg, "--ignore-preflight-errors=all")
			if err == nil || !strings.Contains(out, "none of the public keys") {
				t.Errorf("kubeadm %s join --dry-run with a foreign CA pin: err %v, want a refusal naming the public keys:\n%s", version, err, out)
			}
		})
	})
}

// signClusterInfo adds the JWS signature of the bootstrap token to kube-public/cluster-info,
// as kube-controller-manager's bootstrap signer does.
func signClusterInfo(t *testing.T, srv *apiserver.Server, token string) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	id, secret, _ := strings.Cut(token, ".")
	cm, err := cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(t.Context(), bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kubeadm's bootstrap-token phase made no cluster-info: %v", err)
	}
	sig, err := jws.ComputeDetachedSignature(cm.Data[bootstrapapi.KubeConfigKey], id, secret)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id] = sig
	if _, err := cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// registerNode creates a Node object as a kubelet registering would, with the hostname label
// the kubelet sets: kubeadm's node patches wait for it (two minutes, then give up) before they
// touch a Node.
func registerNode(t *testing.T, srv *apiserver.Server, name string) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{corev1.LabelHostname: name},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// keepHostKubernetes removes what a join dry run leaves under /etc/kubernetes on the host
// (kubeadm before v1.37 writes its dry-run files to /etc/kubernetes/tmp and has no variable
// to move them), so the host ends as it began.
func keepHostKubernetes(t *testing.T) {
	t.Helper()
	const dir = "/etc/kubernetes"
	_, err := os.Stat(dir)
	existed := err == nil
	before := map[string]bool{}
	if existed {
		entries, _ := filepath.Glob(filepath.Join(dir, "tmp", "kubeadm-join-dryrun*"))
		for _, e := range entries {
			before[e] = true
		}
	}
	t.Cleanup(func() {
		if !existed {
			os.RemoveAll(dir)
			return
		}
		entries, _ := filepath.Glob(filepath.Join(dir, "tmp", "kubeadm-join-dryrun*"))
		for _, e := range entries {
			if !before[e] {
				os.RemoveAll(e)
			}
		}
	})
}
