package kubeadm

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/k8sbin"
	k8syaml "sigs.k8s.io/yaml"
)

// The tests in this file judge the rendered configuration with the real kubeadm, built from
// the k8s.io/kubernetes module by hack/build-k8s.sh (see test/k8sbin).

func realKubeadm(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs the real kubeadm " + k8sbin.Version + " (built once by hack/build-k8s.sh); skipped under -short")
	}
	return k8sbin.Kubeadm(t)
}

// runKubeadm runs kubeadm with extra environment and returns its combined output.
func runKubeadm(t *testing.T, kubeadm string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), kubeadm, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeConfig(t *testing.T, dir string, p Params) string {
	t.Helper()
	cfg, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kubeadm-config.yaml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestKubeadmConfigValidate feeds every golden case to `kubeadm config validate`, which
// decodes strictly (unknown fields are errors) and runs kubeadm's own validation.
func TestKubeadmConfigValidate(t *testing.T) {
	kubeadm := realKubeadm(t)
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, t.TempDir(), tc.params(t))
			out, err := runKubeadm(t, kubeadm, nil, "config", "validate", "--config", path)
			if err != nil {
				t.Fatalf("kubeadm config validate: %v\n%s", err, out)
			}
			// kubeadm reports strict-decoding problems as warnings in some versions.
			for _, bad := range []string{"unknown field", "duplicate field", "strict decoding"} {
				if strings.Contains(out, bad) {
					t.Errorf("kubeadm config validate complained (%q):\n%s", bad, out)
				}
			}
			t.Logf("kubeadm config validate: %s", strings.TrimSpace(out))
		})
	}
}

// TestKubeadmImagesList checks the registry decisions with kubeadm's own image names.
func TestKubeadmImagesList(t *testing.T) {
	kubeadm := realKubeadm(t)
	for _, tc := range []struct {
		name string
		want []string // prefixes of images kubeadm must list
	}{
		{"init", []string{"registry.k8s.io/kube-apiserver:" + k8sbin.Version, "registry.k8s.io/coredns/coredns:"}},
		{"mirror-registry", []string{"registry.example.internal:5000/kube-apiserver:" + k8sbin.Version, "registry.example.internal:5000/coredns/coredns:", "registry.example.internal:5000/pause:", "registry.example.internal:5000/etcd:"}},
		{"namespace-override-registry", []string{"dockerhub.kubekey.local/kubesphereio/kube-apiserver:" + k8sbin.Version, "dockerhub.kubekey.local/kubesphereio/coredns:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := slices.IndexFunc(renderCases, func(rc renderCase) bool { return rc.name == tc.name })
			path := writeConfig(t, t.TempDir(), renderCases[i].params(t))
			out, err := runKubeadm(t, kubeadm, nil, "config", "images", "list", "--config", path)
			if err != nil {
				t.Fatalf("kubeadm config images list: %v\n%s", err, out)
			}
			images := strings.Fields(out)
			for _, w := range tc.want {
				if !slices.ContainsFunc(images, func(img string) bool { return strings.HasPrefix(img, w) }) {
					t.Errorf("no image %s… in kubeadm's list:\n%s", w, out)
				}
			}
		})
	}
}

// controlPlaneWithPKI makes real cluster secrets, the init node's config and a root holding
// the node's PKI as WritePKI places it, and returns the parameters with kubeadm's certificate
// directory pointed into that root.
func controlPlaneWithPKI(t *testing.T) (*cluster.Secrets, *cluster.Cluster, Params, string) {
	t.Helper()
	s := testSecrets(t)
	c := sampleCluster()
	nc, err := cluster.NodeConfigFor(c, s, "node1")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := WritePKI(root, nc.Secrets); err != nil {
		t.Fatal(err)
	}
	p := ParamsFromNode(nc, "", "", "")
	p.CertificatesDir = filepath.Join(root, PKIDir)
	return s, c, p, root
}

// TestKubeadmInitDryRun runs the whole of `kubeadm init --dry-run` on the init node's
// configuration with ksboot's PKI in place.
//
// This host is not a node: PID 1 is not systemd, there is no kubelet or container runtime, and
// /etc/kubernetes must stay untouched. The minimal way that works is: the preflight errors that
// say so are ignored (--ignore-preflight-errors=all; dry-run pulls no images and starts
// nothing), KUBEADM_INIT_DRYRUN_DIR sends everything kubeadm would write (certificates,
// kubeconfigs, manifests, kubelet files) to a temporary directory instead of
// /etc/kubernetes/tmp, and certificatesDir points at the pre-placed PKI. --rootfs is not needed
// and would chroot kubeadm into a tree without /proc or /dev.
func TestKubeadmInitDryRun(t *testing.T) {
	kubeadm := realKubeadm(t)
	s, _, p, root := controlPlaneWithPKI(t)
	hostKubernetes := "/etc/kubernetes"
	_, statErr := os.Stat(hostKubernetes)
	hostHadIt := statErr == nil

	// A patch from the cluster file reaches the manifest kubeadm writes (patches.directory).
	p.Patches = []cluster.Patch{{Target: "kube-apiserver", Type: "strategic", Patch: apiserverProbePatch}}
	p.PatchesDir = filepath.Join(root, "patches")
	if err := WritePatches("/", p); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, root, p)
	dryRunDir := filepath.Join(root, "dry-run")
	if err := os.Mkdir(dryRunDir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := runKubeadm(t, kubeadm, []string{"KUBEADM_INIT_DRYRUN_DIR=" + dryRunDir},
		"init", "--dry-run", "--config", cfg, "--ignore-preflight-errors=all")
	if err != nil {
		t.Fatalf("kubeadm init --dry-run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Using existing ca certificate authority",
		"Your Kubernetes control-plane has initialized successfully",
		"--discovery-token-ca-cert-hash " + mustPin(t, s.CACert),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubeadm init --dry-run output lacks %q:\n%s", want, out)
		}
	}
	// The token Secret kubeadm would create has no expiration: seeds keep working.
	secret := between(out, `Resource name "bootstrap-token-`, "type: bootstrap.kubernetes.io/token")
	if secret == "" || strings.Contains(secret, "expiration:") {
		t.Errorf("the bootstrap token Secret is missing or expires (TokenTTL %s):\n%s", p.TokenTTL, secret)
	}
	// The API server's manifest reflects the configuration.
	manifest, err := os.ReadFile(filepath.Join(dryRunDir, "kube-apiserver.yaml"))
	if err != nil {
		t.Fatalf("dry-run wrote no kube-apiserver manifest: %v\n%s", err, out)
	}
	for _, want := range []string{
		"image: registry.k8s.io/kube-apiserver:" + k8sbin.Version,
		"--advertise-address=192.168.0.11",
		"--service-cluster-ip-range=10.233.0.0/18",
		"--secure-port=6443",
	} {
		if !bytes.Contains(manifest, []byte(want)) {
			t.Errorf("kube-apiserver manifest lacks %q", want)
		}
	}
	if !strings.Contains(out, `[patches] Applied patch of type "application/strategic-merge-patch+json" to target "kube-apiserver"`) {
		t.Errorf("kubeadm did not report the patch:\n%s", out)
	}
	var pod struct {
		Spec struct {
			Containers []struct {
				Name                        string
				LivenessProbe, StartupProbe struct{ TimeoutSeconds, FailureThreshold int }
			}
		}
	}
	if err := k8syaml.Unmarshal(manifest, &pod); err != nil || len(pod.Spec.Containers) != 1 {
		t.Fatalf("kube-apiserver manifest: %v\n%s", err, manifest)
	}
	c0 := pod.Spec.Containers[0]
	if c0.LivenessProbe.TimeoutSeconds != 45 || c0.LivenessProbe.FailureThreshold != 20 || c0.StartupProbe.FailureThreshold != 90 {
		t.Errorf("the probe patch did not reach the manifest: liveness %+v, startup %+v", c0.LivenessProbe, c0.StartupProbe)
	}
	// The CA kubeadm used is the seed's, copied unchanged into the dry-run directory.
	if got, err := os.ReadFile(filepath.Join(dryRunDir, "ca.crt")); err != nil || !bytes.Equal(got, s.CACert) {
		t.Errorf("dry-run ca.crt is not the seed's CA (err %v)", err)
	}
	if _, err := os.Stat(hostKubernetes); !hostHadIt && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("kubeadm init --dry-run created %s on the host (%v)", hostKubernetes, err)
	}
}

// TestKubeadmCertsChainToSeedCA checks the whole trust chain between ksboot's seeds and
// kubeadm: kubeadm, given the PKI WritePKI placed, issues an API server certificate signed by
// the seed's CA, and that CA is the one a worker's seed pins.
//
// kubeadm refuses --cert-dir together with --config ("can not mix '--config' with
// arguments"), so the certificate directory is set through the configuration
// (Params.CertificatesDir → certificatesDir).
func TestKubeadmCertsChainToSeedCA(t *testing.T) {
	kubeadm := realKubeadm(t)
	s, c, p, root := controlPlaneWithPKI(t)
	pki := p.CertificatesDir
	cfg := writeConfig(t, root, p)

	out, err := runKubeadm(t, kubeadm, nil, "init", "phase", "certs", "all", "--config", cfg)
	if err != nil {
		t.Fatalf("kubeadm init phase certs all: %v\n%s", err, out)
	}
	for _, ca := range []string{"ca", "etcd/ca", "front-proxy-ca"} {
		if !strings.Contains(out, "Using existing "+ca+" certificate authority") {
			t.Errorf("kubeadm did not reuse the seed's %s:\n%s", ca, out)
		}
	}
	if !strings.Contains(out, "Using the existing \"sa\" key") {
		t.Errorf("kubeadm did not reuse the seed's service-account key:\n%s", out)
	}

	// The CA files are still the seed's, byte for byte.
	for name, want := range map[string][]byte{
		"ca.crt": s.CACert, "ca.key": s.CAKey, "etcd/ca.crt": s.EtcdCACert,
		"front-proxy-ca.crt": s.FrontProxyCACert, "sa.key": s.ServiceAccountKey, "sa.pub": s.ServiceAccountPub,
	} {
		if got, err := os.ReadFile(filepath.Join(pki, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s was replaced by kubeadm (err %v)", name, err)
		}
	}

	// Leaf certificates chain to the seed's CAs.
	apiserver := verifyChain(t, filepath.Join(pki, "apiserver.crt"), s.CACert, x509.ExtKeyUsageServerAuth)
	verifyChain(t, filepath.Join(pki, "apiserver-kubelet-client.crt"), s.CACert, x509.ExtKeyUsageClientAuth)
	verifyChain(t, filepath.Join(pki, "etcd/server.crt"), s.EtcdCACert, x509.ExtKeyUsageServerAuth)
	verifyChain(t, filepath.Join(pki, "apiserver-etcd-client.crt"), s.EtcdCACert, x509.ExtKeyUsageClientAuth)
	verifyChain(t, filepath.Join(pki, "front-proxy-client.crt"), s.FrontProxyCACert, x509.ExtKeyUsageClientAuth)

	if apiserver != nil {
		for _, name := range []string{"lb.kubesphere.local", "node1", "localhost", "kubernetes.default.svc.cluster.local"} {
			if err := apiserver.VerifyHostname(name); err != nil {
				t.Errorf("apiserver certificate: %v", err)
			}
		}
		for _, ip := range []string{"192.168.0.11", "127.0.0.1", "10.233.0.1"} {
			if !slices.ContainsFunc(apiserver.IPAddresses, func(a net.IP) bool { return a.Equal(net.ParseIP(ip)) }) {
				t.Errorf("apiserver certificate lacks IP %s (has %v)", ip, apiserver.IPAddresses)
			}
		}
	}

	// A worker, and a generic worker, pin exactly the CA kubeadm signs with.
	diskPin := mustPin(t, mustRead(t, filepath.Join(pki, "ca.crt")))
	for _, host := range []string{"node2", ""} {
		var wc *cluster.NodeConfig
		if host == "" {
			wc, err = cluster.GenericWorkerConfig(c, s)
		} else {
			wc, err = cluster.NodeConfigFor(c, s, host)
		}
		if err != nil {
			t.Fatal(err)
		}
		if wc.Secrets.CACertHash != diskPin {
			t.Errorf("worker %q pins %s, but kubeadm's CA is %s", host, wc.Secrets.CACertHash, diskPin)
		}
		wp := ParamsFromNode(wc, "worker-x", "", "")
		if !slices.Equal(wp.CACertHashes, []string{diskPin}) {
			t.Errorf("worker %q join config pins %v, want [%s]", host, wp.CACertHashes, diskPin)
		}
	}
}

func verifyChain(t *testing.T, certFile string, caPEM []byte, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(mustRead(t, certFile))
	if block == nil {
		t.Errorf("%s: no PEM certificate", certFile)
		return nil
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Errorf("%s: %v", certFile, err)
		return nil
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("seed CA does not parse")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Errorf("%s does not chain to the seed's CA: %v", certFile, err)
	}
	return leaf
}

// between returns the text from the first start to the following end, or "".
func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	before, _, ok := strings.Cut(after, end)
	if !ok {
		return ""
	}
	return before
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustPin(t *testing.T, certPEM []byte) string {
	t.Helper()
	pin, err := cluster.CAPinFromPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pin
}
