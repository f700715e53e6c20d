package kubeadm

import (
	"bytes"
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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstrapsecretutil "k8s.io/cluster-bootstrap/util/secrets"

	"github.com/ksboot/ksboot/cluster"
)

// TestTokenSecretShape builds the Secret as kubeadm does for a token of `kubeadm init`'s
// bootstrapTokens with ksboot's description, usages and groups.
func TestTokenSecretShape(t *testing.T) {
	const tok = "abcdef.0123456789abcdef"
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	for _, tc := range []struct {
		name       string
		ttl        time.Duration
		expiration string
	}{
		{"never expires", 0, ""},
		{"with ttl", 48 * time.Hour, "2030-01-04T02:04:05Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := TokenSecret(tok, tc.ttl, now)
			if err != nil {
				t.Fatal(err)
			}
			if s.Name != "bootstrap-token-abcdef" || s.Namespace != "kube-system" || s.Type != "bootstrap.kubernetes.io/token" {
				t.Errorf("secret %s/%s of type %s", s.Namespace, s.Name, s.Type)
			}
			want := map[string]string{
				"token-id":                       "abcdef",
				"token-secret":                   "0123456789abcdef",
				"description":                    tokenDescription,
				"usage-bootstrap-authentication": "true",
				"usage-bootstrap-signing":        "true",
				"auth-extra-groups":              "system:bootstrappers:kubeadm:default-node-token",
			}
			if tc.expiration != "" {
				want["expiration"] = tc.expiration
			}
			if len(s.Data) != len(want) {
				t.Errorf("data keys %d, want %d", len(s.Data), len(want))
			}
			for k, v := range want {
				if got := string(s.Data[k]); got != v {
					t.Errorf("data[%s] = %q, want %q", k, got, v)
				}
			}
			groups, err := bootstrapsecretutil.GetGroups(s)
			if err != nil || len(groups) != 2 {
				t.Errorf("cluster-bootstrap reads groups %v, err %v", groups, err)
			}
		})
	}
	if _, err := TokenSecret("ABCDEF.0123456789abcdef", 0, now); err == nil || strings.Contains(err.Error(), "ABCDEF") {
		t.Errorf("malformed token: %v", err)
	}
	if _, err := TokenSecret(tok, -time.Second, now); err == nil {
		t.Error("negative TTL accepted")
	}
}

// tokenTestCluster is a secrets directory and a fake API holding what kubeadm init leaves:
// cluster-info with the directory's CA and the directory's token, plus tokens that are not
// the directory's.
type tokenTestCluster struct {
	dir     string
	secrets *cluster.Secrets
	cs      *fake.Clientset
}

// tokenTestKeys are the key material of every tokenTestCluster: RSA keys take a while.
var tokenTestKeys = sync.OnceValues(cluster.NewSecrets)

func newTokenTestCluster(t *testing.T, extra ...*corev1.Secret) *tokenTestCluster {
	t.Helper()
	keys, err := tokenTestKeys()
	if err != nil {
		t.Fatal(err)
	}
	s := *keys
	if s.BootstrapToken, err = bootstraputil.GenerateBootstrapToken(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "sample-secrets")
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	initTok, err := TokenSecret(s.BootstrapToken, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	objs := []runtime.Object{clusterInfo(t, s.CACert), initTok}
	for _, e := range extra {
		objs = append(objs, e)
	}
	return &tokenTestCluster{dir: dir, secrets: &s, cs: fake.NewClientset(objs...)}
}

// clusterInfo is kube-public/cluster-info as kubeadm init publishes it, unsigned.
func clusterInfo(t *testing.T, caCert []byte) *corev1.ConfigMap {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters[""] = &clientcmdapi.Cluster{Server: "https://lb.kubesphere.local:6443", CertificateAuthorityData: caCert}
	data, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
		Data:       map[string]string{bootstrapapi.KubeConfigKey: string(data)},
	}
}

// fakeSigner stands in for kube-controller-manager's bootstrap signer in unit tests: before
// cluster-info is read, it signs it with every signing token in kube-system and drops the
// signatures of the others. (The integration test runs the real one.)
func fakeSigner(t *testing.T, cs *fake.Clientset) {
	cmGVR := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	secGVR := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	cs.PrependReactor("get", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() != metav1.NamespacePublic {
			return false, nil, nil
		}
		obj, err := cs.Tracker().Get(cmGVR, metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo)
		if err != nil {
			return false, nil, nil
		}
		cm := obj.(*corev1.ConfigMap).DeepCopy()
		list, err := cs.Tracker().List(secGVR, schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, metav1.NamespaceSystem)
		if err != nil {
			t.Error(err)
			return false, nil, nil
		}
		for k := range cm.Data {
			if strings.HasPrefix(k, bootstrapapi.JWSSignatureKeyPrefix) {
				delete(cm.Data, k)
			}
		}
		for _, s := range list.(*corev1.SecretList).Items {
			if s.Type != bootstrapapi.SecretTypeBootstrapToken || string(s.Data[bootstrapapi.BootstrapTokenUsageSigningKey]) != "true" {
				continue
			}
			id, secret := string(s.Data[bootstrapapi.BootstrapTokenIDKey]), string(s.Data[bootstrapapi.BootstrapTokenSecretKey])
			sig, err := jws.ComputeDetachedSignature(cm.Data[bootstrapapi.KubeConfigKey], id, secret)
			if err != nil {
				t.Error(err)
			}
			cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id] = sig
		}
		if err := cs.Tracker().Update(cmGVR, cm, metav1.NamespacePublic); err != nil {
			t.Error(err)
		}
		return false, nil, nil
	})
}

// failOn makes the fake API refuse one verb on one Secret (any Secret when name is "").
func failOn(cs *fake.Clientset, verb, name string) {
	cs.PrependReactor(verb, "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var n string
		switch a := a.(type) {
		case k8stesting.CreateAction:
			n = a.GetObject().(*corev1.Secret).Name
		case k8stesting.DeleteAction:
			n = a.GetName()
		}
		if name != "" && n != name {
			return false, nil, nil
		}
		return true, nil, apierrors.NewServiceUnavailable("injected " + verb + " failure")
	})
}

// tokenIDs lists the bootstrap tokens in the fake API.
func (c *tokenTestCluster) tokenIDs(t *testing.T) []string {
	t.Helper()
	list, err := c.cs.CoreV1().Secrets(metav1.NamespaceSystem).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range list.Items {
		if id, ok := bootstrapsecretutil.ParseName(s.Name); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

func (c *tokenTestCluster) onDisk(t *testing.T) string {
	t.Helper()
	tok, err := cluster.ReadBootstrapToken(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func tokenSecret(t *testing.T, description string) *corev1.Secret {
	t.Helper()
	tok, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	s, err := TokenSecret(tok, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.Data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(description)
	return s
}

// TestRotateToken rotates against a fake API with a stand-in signer: the new token is in the
// cluster and the directory, the old one and a ksboot token left by an interrupted rotation
// are gone, a token someone made with kubeadm stays, and the output names token IDs only.
func TestRotateToken(t *testing.T) {
	orphan := tokenSecret(t, tokenDescription)
	foreign := tokenSecret(t, "made by hand with kubeadm token create")
	c := newTokenTestCluster(t, orphan, foreign)
	fakeSigner(t, c.cs)
	var progress bytes.Buffer
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := RotateToken(context.Background(), c.cs, RotateOptions{
		SecretsDir: c.dir, TTL: 24 * time.Hour, Progress: &progress, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, &progress)
	}
	oldID := tokenID(c.secrets.BootstrapToken)
	newTok := c.onDisk(t)
	if res.OldID != oldID || res.NewID != tokenID(newTok) || res.NewID == oldID || !res.OldDeleted {
		t.Errorf("result %+v (old %s)", res, oldID)
	}
	orphanID, _ := bootstrapsecretutil.ParseName(orphan.Name)
	foreignID, _ := bootstrapsecretutil.ParseName(foreign.Name)
	if len(res.Stale) != 1 || res.Stale[0] != orphanID {
		t.Errorf("stale tokens deleted %v, want [%s]", res.Stale, orphanID)
	}
	if got, want := strings.Join(slices.Sorted(slices.Values(c.tokenIDs(t))), ","), strings.Join(slices.Sorted(slices.Values([]string{res.NewID, foreignID})), ","); got != want {
		t.Errorf("tokens in the cluster %s, want %s", got, want)
	}
	sec, err := c.cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(context.Background(), bootstraputil.BootstrapTokenSecretName(res.NewID), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := TokenSecret(newTok, 24*time.Hour, now)
	for k, v := range want.Data {
		if !bytes.Equal(sec.Data[k], v) {
			t.Errorf("new token secret data[%s] differs", k)
		}
	}
	if !res.Expires.Equal(now.Add(24*time.Hour)) || !strings.Contains(res.Expiry(), "2030-01-03T03:04:05Z") {
		t.Errorf("expires %s (%s)", res.Expires, res.Expiry())
	}
	for _, tok := range []string{c.secrets.BootstrapToken, newTok} {
		if strings.Contains(progress.String(), tok) {
			t.Errorf("a token was printed:\n%s", &progress)
		}
	}
	if !strings.Contains(progress.String(), "is signed for token "+res.NewID) {
		t.Errorf("progress does not report the signature:\n%s", &progress)
	}
}

// TestRotateTokenFailures fails each step in turn: the directory and the cluster always keep a
// working token, and the error says which.
func TestRotateTokenFailures(t *testing.T) {
	defer func(w func(string, string) error) { writeBootstrapToken = w }(writeBootstrapToken)
	for _, tc := range []struct {
		name string
		// setup breaks something; it gets the old token's ID.
		setup  func(t *testing.T, c *tokenTestCluster, oldID string)
		signer bool
		want   []string
		// afterwards: which token the directory holds, whether the old and the new token
		// are in the cluster.
		diskNew, oldThere, newThere bool
		result                      bool
	}{
		{
			name:  "other cluster",
			setup: func(t *testing.T, c *tokenTestCluster, _ string) { replaceClusterInfo(t, c, testSecrets(t).CACert) },
			want:  []string{"different clusters", "nothing changed"}, oldThere: true,
		},
		{
			name: "no cluster-info",
			setup: func(t *testing.T, c *tokenTestCluster, _ string) {
				if err := c.cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Delete(context.Background(), bootstrapapi.ConfigMapClusterInfo, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"has no kube-public/cluster-info", "nothing changed"}, oldThere: true,
		},
		{
			name:  "create fails",
			setup: func(t *testing.T, c *tokenTestCluster, _ string) { failOn(c.cs, "create", "") },
			want:  []string{"creating bootstrap token", "injected create failure", "nothing changed"}, oldThere: true,
		},
		{
			name: "never signed",
			want: []string{"did not sign kube-public/cluster-info", "bootstrapsigner", "was deleted again", "nothing changed"}, oldThere: true,
		},
		{
			name: "never signed, rollback fails",
			setup: func(t *testing.T, c *tokenTestCluster, oldID string) {
				c.cs.PrependReactor("delete", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
					if a.(k8stesting.DeleteAction).GetName() != bootstraputil.BootstrapTokenSecretName(oldID) {
						return true, nil, apierrors.NewServiceUnavailable("injected delete failure")
					}
					return false, nil, nil
				})
			},
			want: []string{"did not sign", "still works", "could not be removed", "kubectl -n kube-system delete secret bootstrap-token-"}, oldThere: true, newThere: true,
		},
		{
			name: "write fails",
			setup: func(*testing.T, *tokenTestCluster, string) {
				writeBootstrapToken = func(string, string) error { return errors.New("injected write failure") }
			},
			signer: true,
			want:   []string{"injected write failure", "was deleted again", "nothing changed"}, oldThere: true,
		},
		{
			name: "write fails after the rename",
			setup: func(*testing.T, *tokenTestCluster, string) {
				writeBootstrapToken = func(dir, tok string) error {
					if err := cluster.WriteBootstrapToken(dir, tok); err != nil {
						return err
					}
					return errors.New("injected sync failure")
				}
			},
			signer: true, diskNew: true, newThere: true, result: true,
		},
		{
			name: "deleting the old token fails",
			setup: func(t *testing.T, c *tokenTestCluster, oldID string) {
				failOn(c.cs, "delete", bootstraputil.BootstrapTokenSecretName(oldID))
			},
			signer:  true,
			want:    []string{"hold the new token", "seeds built before may still join", "injected delete failure", "run ksboot token rotate again"},
			diskNew: true, oldThere: true, newThere: true, result: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeBootstrapToken = cluster.WriteBootstrapToken
			c := newTokenTestCluster(t)
			oldID := tokenID(c.secrets.BootstrapToken)
			if tc.signer {
				fakeSigner(t, c.cs)
			}
			if tc.setup != nil {
				tc.setup(t, c, oldID)
			}
			var progress bytes.Buffer
			res, err := RotateToken(context.Background(), c.cs, RotateOptions{SecretsDir: c.dir, SignatureWait: 50 * time.Millisecond, Progress: &progress})
			if len(tc.want) == 0 && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
			if (res != nil) != tc.result {
				t.Errorf("result %+v, want one: %v", res, tc.result)
			}
			if err != nil && strings.Contains(err.Error(), c.secrets.BootstrapToken) {
				t.Error("the error shows the old token")
			}
			disk := c.onDisk(t)
			if (disk != c.secrets.BootstrapToken) != tc.diskNew {
				t.Errorf("directory holds the new token: %v, want %v", disk != c.secrets.BootstrapToken, tc.diskNew)
			}
			ids := c.tokenIDs(t)
			var oldThere, newThere bool
			for _, id := range ids {
				switch {
				case id == oldID:
					oldThere = true
				case res == nil || id == res.NewID:
					newThere = true
				}
			}
			if oldThere != tc.oldThere || newThere != tc.newThere {
				t.Errorf("tokens in the cluster %v: old there %v (want %v), new there %v (want %v)", ids, oldThere, tc.oldThere, newThere, tc.newThere)
			}
			// The directory's token always works: it is in the cluster.
			if !slices.Contains(ids, tokenID(disk)) {
				t.Errorf("the directory's token %s is not in the cluster %v", tokenID(disk), ids)
			}
		})
	}
}

func replaceClusterInfo(t *testing.T, c *tokenTestCluster, caCert []byte) {
	t.Helper()
	if _, err := c.cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Update(context.Background(), clusterInfo(t, caCert), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
