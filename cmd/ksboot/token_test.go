package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstrapsecretutil "k8s.io/cluster-bootstrap/util/secrets"

	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/apiserver"
)

// tokenTestFiles writes a cluster file (the sample) with its secrets directory, as after the
// first build-seed.
func tokenTestFiles(t *testing.T) (file, secretsDir string) {
	t.Helper()
	dir := t.TempDir()
	file = filepath.Join(dir, "cluster.yaml")
	if code, out, errOut := ksboot(t, "create", "config", "-f", file); code != 0 {
		t.Fatalf("create config: exit %d\n%s%s", code, out, errOut)
	}
	secretsDir = cluster.SecretsDir(file, "sample")
	if _, _, err := cluster.LoadOrCreateSecrets(secretsDir); err != nil {
		t.Fatal(err)
	}
	return file, secretsDir
}

// unreachableKubeconfig is a valid kubeconfig for a loopback port nothing listens on.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "unused"}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "admin.conf")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTokenRotateNamesMissingFiles: a missing kubeconfig or secrets directory fails before
// anything is contacted, with exit code 1 and an error that names the file.
func TestTokenRotateNamesMissingFiles(t *testing.T) {
	file, secretsDir := tokenTestFiles(t)
	missingKC := filepath.Join(t.TempDir(), "no-such-admin.conf")
	missingDir := filepath.Join(t.TempDir(), "elsewhere-secrets")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"kubeconfig", []string{"-f", file, "--kubeconfig", missingKC}, missingKC},
		{"secrets directory", []string{"-f", file, "--secrets", missingDir, "--kubeconfig", unreachableKubeconfig(t)}, missingDir},
		{"cluster file", []string{"-f", filepath.Join(t.TempDir(), "none.yaml"), "--kubeconfig", unreachableKubeconfig(t)}, "none.yaml"},
		{"neither file nor directory", []string{"--kubeconfig", unreachableKubeconfig(t)}, "-f"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := ksboot(t, append([]string{"token", "rotate"}, tc.args...)...)
			if code != exitFailure || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want %d, and an error naming %s:\n%s%s", code, exitFailure, tc.want, out, errOut)
			}
		})
	}
	// The secrets directory beside the cluster file is the default; it is found and left alone.
	before, err := cluster.ReadBootstrapToken(secretsDir)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut := ksboot(t, "token", "rotate", "-f", file, "--kubeconfig", unreachableKubeconfig(t), "--wait", "1s")
	if code != exitFailure || !strings.Contains(errOut, "nothing changed") || !strings.Contains(errOut, secretsDir) {
		t.Errorf("unreachable API: exit %d, want an error naming %s and saying nothing changed:\n%s", code, secretsDir, errOut)
	}
	if after, _ := cluster.ReadBootstrapToken(secretsDir); after != before {
		t.Error("a failed rotation changed the secrets directory")
	}
}

// TestBuildSeedAfterTokenRotation: seeds built after the secrets directory got a new token
// (what `token rotate` writes) carry it, on control planes and workers alike.
func TestBuildSeedAfterTokenRotation(t *testing.T) {
	file, secretsDir := tokenTestFiles(t)
	old, err := cluster.ReadBootstrapToken(secretsDir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.WriteBootstrapToken(secretsDir, tok); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "seeds")
	code, stdout, errOut := ksboot(t, "build-seed", "-f", file, "-o", out, "--agent", fakeAgent(t), "--node", "node1", "--node", "node2")
	if code != 0 {
		t.Fatalf("build-seed: exit %d\n%s%s", code, stdout, errOut)
	}
	for _, node := range []string{"node1", "node2"} {
		userData := isoFiles(t, filepath.Join(out, node+".iso"))["user-data"]
		nc := nodeConfigFromUserData(t, userData)
		if nc.Secrets.BootstrapToken != tok || strings.Contains(string(userData), old) {
			t.Errorf("%s: the seed does not carry the new token alone", node)
		}
	}
}

// TestTokenRotateWithoutSigner runs the command against a real kube-apiserver that has no
// kube-controller-manager, so cluster-info is never signed for the new token: the command
// waits, gives up, deletes the new token again and says that nothing changed; the seed's
// token stays in the cluster and in the directory.
func TestTokenRotateWithoutSigner(t *testing.T) {
	srv := apiserver.Start(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(srv.Config)
	dir := t.TempDir()
	secretsDir := filepath.Join(dir, "sample-secrets")
	if err := srv.Secrets.Save(secretsDir); err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[""] = &clientcmdapi.Cluster{Server: srv.URL, CertificateAuthorityData: srv.Secrets.CACert}
	info, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
		Data:       map[string]string{bootstrapapi.KubeConfigKey: string(info)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	seedTok, err := kubeadm.TokenSecret(srv.Secrets.BootstrapToken, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, seedTok, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := ksboot(t, "token", "rotate", "--secrets", secretsDir, "--kubeconfig", srv.Kubeconfig, "--wait", "3s")
	if code != exitFailure {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitFailure, out, errOut)
	}
	for _, want := range []string{"created bootstrap token", "waiting for kube-controller-manager to sign kube-public/cluster-info", "did not sign", "was deleted again", "nothing changed"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("output lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(out+errOut, srv.Secrets.BootstrapToken) {
		t.Error("the token was printed")
	}
	list, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range list.Items {
		if id, ok := bootstrapsecretutil.ParseName(s.Name); ok {
			ids = append(ids, id)
		}
	}
	seedID, _, _ := strings.Cut(srv.Secrets.BootstrapToken, ".")
	if len(ids) != 1 || ids[0] != seedID {
		t.Errorf("bootstrap tokens in the cluster %v, want only the seed's %s", ids, seedID)
	}
	if tok, err := cluster.ReadBootstrapToken(secretsDir); err != nil || tok != srv.Secrets.BootstrapToken {
		t.Errorf("the secrets directory changed (err %v)", err)
	}
}
