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
	"github.com/ksboot/ksboot/versions"
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

// judgedKubeadms returns the real kubeadm of every release the version matrix says the tests
// judge (versions.Judged), building each once (cached); a release whose kubeadm cannot be had
// skips only its own subtests, saying why.
func judgedKubeadms(t *testing.T) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs the real kubeadm of every judged release (built once by hack/build-k8s.sh); skipped under -short")
	}
	var out []string
	for _, p := range versions.Judged {
		if p.Kubeadm {
			out = append(out, p.Version)
		}
	}
	return out
}

// forEachJudged runs f in a subtest per judged release with that release's kubeadm.
func forEachJudged(t *testing.T, f func(t *testing.T, version, kubeadm string)) {
	t.Helper()
	for _, v := range judgedKubeadms(t) {
		t.Run(v, func(t *testing.T) {
			f(t, v, k8sbin.KubeadmAt(t, v))
		})
	}
}

// hasSubcommand reports whether this kubeadm has a subcommand (config validate arrived in
// v1.27): an unknown one makes kubeadm print its parent's help and exit 0, so the help text's
// usage line is what tells.
func hasSubcommand(t *testing.T, kubeadm string, args ...string) bool {
	t.Helper()
	out, _ := runKubeadm(t, kubeadm, nil, append(args, "--help")...)
	return strings.Contains(out, "kubeadm "+strings.Join(args, " ")+" [flags]")
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

// TestKubeadmConfigValidate feeds every golden case, rendered at every judged release, to that
// release's `kubeadm config validate`, which decodes strictly (unknown fields are errors) and
// runs kubeadm's own validation. kubeadm below v1.27 has no config validate: there init
// --dry-run (below) and join --dry-run judge the same configurations.
func TestKubeadmConfigValidate(t *testing.T) {
	forEachJudged(t, func(t *testing.T, version, kubeadm string) {
		if !hasSubcommand(t, kubeadm, "config", "validate") {
			t.Skipf("kubeadm %s has no config validate (added in v1.27); TestKubeadmInitDryRun and TestKubeadmJoinDryRun judge its configurations", version)
		}
		for _, tc := range renderCases {
			t.Run(tc.name, func(t *testing.T) {
				p := tc.params(t)
				p.KubernetesVersion = version
				path := writeConfig(t, t.TempDir(), p)
				out, err := runKubeadm(t, kubeadm, nil, "config", "validate", "--config", path)
				if err != nil {
					t.Fatalf("kubeadm %s config validate: %v\n%s", version, err, out)
				}
				noStrictComplaints(t, out)
				t.Logf("kubeadm config validate: %s", strings.TrimSpace(out))
			})
		}
	})
}

// noStrictComplaints fails on strict-decoding problems, which kubeadm reports as warnings in
// some versions and some commands.
func noStrictComplaints(t *testing.T, out string) {
	t.Helper()
	for _, bad := range []string{"unknown field", "duplicate field", "strict decoding"} {
		if strings.Contains(out, bad) {
			t.Errorf("kubeadm complained (%q):\n%s", bad, out)
		}
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
	forEachJudged(t, func(t *testing.T, version, kubeadm string) {
		for _, tc := range renderCases {
			if tc.role != RoleInit {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				s, _, base, root := controlPlaneWithPKI(t)
				p := tc.params(t)
				p.KubernetesVersion = version
				p.CertificatesDir = base.CertificatesDir
				if tc.name == "init" {
					// A patch from the cluster file reaches the manifest kubeadm writes
					// (patches.directory).
					p.Patches = []cluster.Patch{{Target: "kube-apiserver", Type: "strategic", Patch: apiserverProbePatch}}
				}
				out, dryRunDir, err := initDryRun(t, kubeadm, p, root)
				seedCA := true
				if err != nil && strings.Contains(out, "couldn't load front-proxy-ca certificate authority from") {
					// kubeadm before v1.32 copies only ca.crt and ca.key of an existing CA
					// into its dry-run directory, so a dry run with the seed's front-proxy
					// and etcd CAs in place always fails at certs/front-proxy-client (a real
					// init does not: TestKubeadmCertsChainToSeedCA runs the certs phase of
					// every judged release for real). Judge the configuration again with
					// kubeadm's own fresh CAs.
					t.Logf("kubeadm %s: dry run cannot reuse an existing front-proxy CA (upstream's dry-run copies only ca.*); retrying with fresh CAs", version)
					seedCA = false
					p.CertificatesDir = filepath.Join(t.TempDir(), "pki")
					root = t.TempDir()
					out, dryRunDir, err = initDryRun(t, kubeadm, p, root)
				}
				if err != nil {
					t.Fatalf("kubeadm %s init --dry-run: %v\n%s", version, err, out)
				}
				wants := []string{"Your Kubernetes control-plane has initialized successfully"}
				if seedCA {
					wants = append(wants, "Using existing ca certificate authority", "--discovery-token-ca-cert-hash "+mustPin(t, s.CACert))
				}
				for _, want := range wants {
					if !strings.Contains(out, want) {
						t.Errorf("kubeadm %s init --dry-run output lacks %q:\n%s", version, want, out)
					}
				}
				noStrictComplaints(t, out)
				if tc.name == "init" {
					checkInitDryRun(t, version, p, s, out, dryRunDir, seedCA)
				}
			})
		}
	})
}

// initDryRun runs `kubeadm init --dry-run` on the parameters, with their patches written, and
// returns its output and the directory it wrote to. /etc/kubernetes on the host stays as it
// was.
func initDryRun(t *testing.T, kubeadm string, p Params, root string) (out, dryRunDir string, err error) {
	t.Helper()
	hostKubernetes := "/etc/kubernetes"
	_, statErr := os.Stat(hostKubernetes)
	hostHadIt := statErr == nil
	if len(p.Patches) > 0 {
		p.PatchesDir = filepath.Join(root, "patches")
		if err := WritePatches("/", p); err != nil {
			t.Fatal(err)
		}
	}
	cfg := writeConfig(t, root, p)
	dryRunDir = filepath.Join(root, "dry-run")
	if err := os.Mkdir(dryRunDir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err = runKubeadm(t, kubeadm, []string{"KUBEADM_INIT_DRYRUN_DIR=" + dryRunDir},
		"init", "--dry-run", "--config", cfg, "--ignore-preflight-errors=all")
	if _, statErr := os.Stat(hostKubernetes); !hostHadIt && !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("kubeadm init --dry-run created %s on the host (%v)", hostKubernetes, statErr)
	}
	return out, dryRunDir, err
}

// checkInitDryRun checks what the init node's dry run wrote: the token, the API server's
// manifest with the patch applied, and the seed's CA.
func checkInitDryRun(t *testing.T, version string, p Params, s *cluster.Secrets, out, dryRunDir string, seedCA bool) {
	t.Helper()
	// The token Secret kubeadm would create has no expiration: seeds keep working. (The
	// object is printed after "Attached object:" in every release; its header differs.)
	secret := ""
	if end := strings.Index(out, "type: bootstrap.kubernetes.io/token"); end > 0 {
		if start := strings.LastIndex(out[:end], "Attached object:"); start >= 0 {
			secret = out[start:end]
		}
	}
	if secret == "" || !strings.Contains(secret, "token-id:") || strings.Contains(secret, "expiration:") {
		t.Errorf("the bootstrap token Secret is missing or expires (TokenTTL %s):\n%s", p.TokenTTL, secret)
	}
	// The API server's manifest reflects the configuration. kubeadm before v1.31 writes into
	// a temporary directory of its own under the dry-run directory.
	if found, _ := filepath.Glob(filepath.Join(dryRunDir, "tmp", "kubeadm-init-dryrun*")); len(found) == 1 {
		dryRunDir = found[0]
	}
	manifest, err := os.ReadFile(filepath.Join(dryRunDir, "kube-apiserver.yaml"))
	if err != nil {
		t.Fatalf("dry-run wrote no kube-apiserver manifest: %v\n%s", err, out)
	}
	for _, want := range []string{
		"image: registry.k8s.io/kube-apiserver:" + version,
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
	if !seedCA {
		return
	}
	if got, err := os.ReadFile(filepath.Join(dryRunDir, "ca.crt")); err != nil || !bytes.Equal(got, s.CACert) {
		t.Errorf("dry-run ca.crt is not the seed's CA (err %v)", err)
	}
}

// TestKubeadmCertsChainToSeedCA checks, for every judged release, the whole trust chain
// between ksboot's seeds and kubeadm: kubeadm, given the PKI WritePKI placed, issues an API server certificate signed by
// the seed's CA, and that CA is the one a worker's seed pins.
//
// kubeadm refuses --cert-dir together with --config ("can not mix '--config' with
// arguments"), so the certificate directory is set through the configuration
// (Params.CertificatesDir → certificatesDir).
func TestKubeadmCertsChainToSeedCA(t *testing.T) {
	forEachJudged(t, certsChainToSeedCA)
}

// certsChainToSeedCA is TestKubeadmCertsChainToSeedCA for one release's kubeadm.
func certsChainToSeedCA(t *testing.T, version, kubeadm string) {
	s, c, p, root := controlPlaneWithPKI(t)
	p.KubernetesVersion = version
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

// TestKubeadmTagsOfJudged: the CoreDNS and etcd tags the version matrix records for a judged
// release (what the offline bundle carries and install pre-loads) are the ones that release's
// kubeadm lists.
func TestKubeadmTagsOfJudged(t *testing.T) {
	forEachJudged(t, func(t *testing.T, version, kubeadm string) {
		out, err := runKubeadm(t, kubeadm, nil, "config", "images", "list", "--kubernetes-version", version)
		if err != nil {
			t.Fatalf("kubeadm %s config images list: %v\n%s", version, err, out)
		}
		coreDNS, etcd, exact := versions.KubeadmTags(version)
		if !exact {
			t.Errorf("versions.KubeadmTags(%s) is not exact: the tags of a judged release must be read", version)
		}
		images := strings.Fields(out)
		for _, want := range []string{"registry.k8s.io/coredns/coredns:" + coreDNS, "registry.k8s.io/etcd:" + etcd} {
			if !slices.Contains(images, want) {
				t.Errorf("kubeadm %s lists no %s:\n%s", version, want, out)
			}
		}
	})
}
