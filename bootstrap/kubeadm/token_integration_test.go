package kubeadm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/apiserver"
	"github.com/ksboot/ksboot/test/k8sbin"
)

// TestRotateTokenAgainstAPIServer rotates the bootstrap token of a real kube-apiserver (with
// --enable-bootstrap-token-auth, as kubeadm runs it) whose cluster-info is signed by a real
// kube-controller-manager running only the bootstrap signer and token cleaner, the
// controllers kubeadm enables for tokens. Before the rotation the seed's token authenticates;
// afterwards the old token is refused with 401, the new one authenticates as kubeadm's node
// bootstrapper, cluster-info carries the new token's signature and not the old one's, and
// seeds rendered from the secrets directory carry the new token.
func TestRotateTokenAgainstAPIServer(t *testing.T) {
	srv := apiserver.Start(t)
	startTokenControllers(t, srv)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "sample-secrets")
	if err := srv.Secrets.Save(dir); err != nil {
		t.Fatal(err)
	}
	oldTok := srv.Secrets.BootstrapToken
	oldID := tokenID(oldTok)

	// What kubeadm init leaves: the seed's token (TTL 0) and cluster-info, unsigned.
	if _, err := cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Create(ctx, clusterInfo(t, srv.Secrets.CACert), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	initTok, err := TokenSecret(oldTok, SeedTokenTTL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, initTok, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WaitForTokenSignature(ctx, cs, oldTok, time.Minute, tlog{t}); err != nil {
		t.Fatalf("the real bootstrap signer did not sign for the seed's token: %v", err)
	}
	if user := whoAmI(t, srv, oldTok); user == nil || user.Username != bootstrapapi.BootstrapUserPrefix+oldID {
		t.Fatalf("before the rotation the seed's token authenticates as %+v", user)
	}

	// Through the kubeconfig file, as `ksboot token rotate --kubeconfig` connects.
	client, err := ClientFromKubeconfig(srv.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	res, err := RotateToken(ctx, client, RotateOptions{SecretsDir: dir, SignatureWait: time.Minute, Progress: &progress})
	t.Logf("progress:\n%s", &progress)
	if err != nil {
		t.Fatal(err)
	}
	newTok, err := cluster.ReadBootstrapToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.OldID != oldID || res.NewID != tokenID(newTok) || !res.OldDeleted || len(res.Stale) != 0 {
		t.Errorf("result %+v", res)
	}
	if strings.Contains(progress.String(), newTok) || strings.Contains(progress.String(), oldTok) {
		t.Error("a token was printed")
	}

	t.Run("secret shape", func(t *testing.T) {
		got, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, bootstraputil.BootstrapTokenSecretName(res.NewID), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := TokenSecret(newTok, 0, time.Now())
		if got.Type != bootstrapapi.SecretTypeBootstrapToken || len(got.Data) != len(want.Data) {
			t.Errorf("type %s, %d data keys; want %s, %d", got.Type, len(got.Data), want.Type, len(want.Data))
		}
		for k, v := range want.Data {
			if !bytes.Equal(got.Data[k], v) {
				t.Errorf("data[%s] differs", k)
			}
		}
		if _, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, initTok.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the old token's Secret: %v, want NotFound", err)
		}
	})

	t.Run("authentication", func(t *testing.T) {
		// The API server reads tokens through an informer: the deletion arrives shortly.
		deadline := time.Now().Add(30 * time.Second)
		for whoAmI(t, srv, oldTok) != nil {
			if time.Now().After(deadline) {
				t.Fatal("the old token still authenticates 30s after the rotation")
			}
			time.Sleep(200 * time.Millisecond)
		}
		user := whoAmI(t, srv, newTok)
		if user == nil {
			t.Fatal("the new token is refused")
		}
		if user.Username != bootstrapapi.BootstrapUserPrefix+res.NewID ||
			!slices.Contains(user.Groups, "system:bootstrappers:kubeadm:default-node-token") || !slices.Contains(user.Groups, bootstrapapi.BootstrapDefaultGroup) {
			t.Errorf("the new token authenticates as %s in %v", user.Username, user.Groups)
		}
	})

	t.Run("cluster-info", func(t *testing.T) {
		// The signer drops the signature of a deleted token.
		deadline := time.Now().Add(30 * time.Second)
		for {
			cm, err := cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, oldSig := cm.Data[bootstrapapi.JWSSignatureKeyPrefix+oldID]
			if TokenSigned(cm, newTok) && !oldSig {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster-info: signed for the new token %v, still for the old one %v", TokenSigned(cm, newTok), oldSig)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("seeds built afterwards", func(t *testing.T) {
		s, err := cluster.ReadSecrets(dir)
		if err != nil {
			t.Fatal(err)
		}
		c := sampleCluster()
		for _, host := range []string{"node1", "node2"} {
			nc, err := cluster.NodeConfigFor(c, s, host)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Render(ParamsFromNode(nc, "", "", ""))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(cfg, []byte("token: "+newTok)) || bytes.Contains(cfg, []byte(oldTok)) {
				t.Errorf("%s: the kubeadm configuration does not carry the new token alone", host)
			}
		}
	})

	t.Run("ttl", func(t *testing.T) {
		var progress bytes.Buffer
		res2, err := RotateToken(ctx, client, RotateOptions{SecretsDir: dir, TTL: time.Hour, SignatureWait: time.Minute, Progress: &progress})
		if err != nil {
			t.Fatalf("%v\n%s", err, &progress)
		}
		if res2.OldID != res.NewID || time.Until(res2.Expires) < 59*time.Minute || time.Until(res2.Expires) > time.Hour {
			t.Errorf("second rotation: %+v", res2)
		}
		got, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, bootstraputil.BootstrapTokenSecretName(res2.NewID), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if exp := string(got.Data[bootstrapapi.BootstrapTokenExpirationKey]); exp != res2.Expires.UTC().Format(time.RFC3339) {
			t.Errorf("expiration %q, want %s", exp, res2.Expires.UTC().Format(time.RFC3339))
		}
	})
}

// whoAmI asks the API server who the bearer token is (SelfSubjectReview, allowed to every
// authenticated user); nil when the server answers 401.
func whoAmI(t *testing.T, srv *apiserver.Server, token string) *authenticationv1.UserInfo {
	t.Helper()
	cfg := &rest.Config{Host: srv.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: srv.Secrets.CACert}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if apierrors.IsUnauthorized(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("SelfSubjectReview: %v", err)
	}
	return &r.Status.UserInfo
}

// startTokenControllers runs kube-controller-manager with only the controllers kubeadm adds
// for bootstrap tokens (bootstrapsigner, tokencleaner) against the test API server, no
// serving port and no leader election; it stops with the test.
func startTokenControllers(t *testing.T, srv *apiserver.Server) {
	t.Helper()
	bin := k8sbin.Binary(t, "kube-controller-manager")
	logPath := filepath.Join(t.TempDir(), "kube-controller-manager.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--kubeconfig="+srv.Kubeconfig,
		"--controllers=bootstrapsigner,tokencleaner",
		"--leader-elect=false",
		"--secure-port=0",
		"--v=2",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			t.Logf("last lines of %s:\n%s", logPath, strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	})
}

// tlog writes progress lines to the test log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
