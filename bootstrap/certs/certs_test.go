package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
)

// certPEM is a self-signed certificate expiring at notAfter.
func certPEM(t testing.TB, cn string, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: notAfter.Add(-365 * 24 * time.Hour), NotAfter: notAfter}, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}}, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// WriteControlPlane lays out a control plane's kubeadm certificates under root: leaf
// certificates expiring at leaf (apiserver at apiserver), CAs in ten years.
func writeControlPlane(t testing.TB, root string, leaf, apiserver time.Time) {
	t.Helper()
	for _, m := range managed {
		if m.name == "super-admin.conf" {
			continue // v1.28 and older: absent, and left out
		}
		notAfter := leaf
		switch {
		case m.ca:
			notAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
		case m.name == "apiserver":
			notAfter = apiserver
		}
		data := certPEM(t, m.name, notAfter)
		if m.kubeconfig {
			cfg := clientcmdapi.NewConfig()
			cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{ClientCertificateData: data, ClientKeyData: []byte("not read")}
			cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443"}
			cfg.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
			cfg.CurrentContext = "x"
			var err error
			if data, err = clientcmd.Write(*cfg); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(root, m.file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadDueReport(t *testing.T) {
	root := t.TempDir()
	if certs, err := Read(host.Root(root)); err != nil || len(certs) != 0 {
		t.Fatalf("a worker: %v, %v; want nothing", certs, err)
	}
	now := time.Now()
	writeControlPlane(t, root, now.Add(300*24*time.Hour), now.Add(20*24*time.Hour))
	certs, err := Read(host.Root(root))
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != len(managed)-1 {
		t.Errorf("read %d certificates, want %d (all but super-admin.conf)", len(certs), len(managed)-1)
	}
	e, ok := Earliest(certs)
	if !ok || e.Name != "apiserver" {
		t.Errorf("earliest %+v, want apiserver", e)
	}
	if !Due(certs, now) || Due(certs, now.Add(-30*24*time.Hour)) {
		t.Error("due: want due with 20 days left, not with 50")
	}
	back, err := ParseReport(Report(certs))
	if err != nil || len(back) != len(certs) || back[0].Name != "apiserver" || !back[0].NotAfter.Equal(e.NotAfter.Truncate(time.Second)) {
		t.Errorf("report round trip: %+v, %v", back, err)
	}
	var b strings.Builder
	WriteTable(&b, []NodeCerts{{Node: "cp1", Certs: back}, {Node: "cp2", Problem: "no report"}}, now)
	if out := b.String(); !strings.Contains(out, "apiserver") || !strings.Contains(out, "19d") || !strings.Contains(out, "9y") || !strings.Contains(out, "cp2: no report") {
		t.Errorf("table:\n%s", out)
	}

	// A CA is never "due": kubeadm does not renew CAs.
	if Due([]Cert{{Name: "ca", CA: true, NotAfter: now.Add(time.Hour)}}, now) {
		t.Error("a CA alone is due")
	}
	// A damaged file is named.
	if err := os.WriteFile(filepath.Join(root, "etc/kubernetes/pki/apiserver.crt"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(host.Root(root)); err == nil || !strings.Contains(err.Error(), "apiserver.crt") {
		t.Errorf("damaged apiserver.crt: %v", err)
	}
}

func TestRenew(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "root/.kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "root/.kube/config"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/kubernetes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/kubernetes/admin.conf"), []byte("renewed"), 0o600); err != nil {
		t.Fatal(err)
	}
	stub := hosttest.NewStub(t)
	stub.Register(`^/usr/local/bin/kubeadm certs renew all$`, "", nil)
	stub.Register(`^/usr/local/bin/crictl pods --namespace kube-system --name '\^kube-apiserver-cp1\$' -q$`, "aaa\n", nil)
	stub.Register(`^/usr/local/bin/crictl pods --namespace kube-system --name '\^kube-controller-manager-cp1\$' -q$`, "bbb\n", nil)
	stub.Register(`^/usr/local/bin/crictl pods --namespace kube-system --name '\^kube-scheduler-cp1\$' -q$`, "", nil)
	stub.Register(`^/usr/local/bin/crictl pods --namespace kube-system --name '\^etcd-cp1\$' -q$`, "ccc\n", nil)
	stub.Register(`^/usr/local/bin/crictl rmp -f aaa bbb ccc$`, "", nil)
	var console strings.Builder
	waited := false
	err := Renew(context.Background(), RenewOptions{Root: host.Root(root), Exec: stub, Console: &console, Node: "cp1",
		APIReady: func(context.Context) error { waited = true; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "root/.kube/config")); string(b) != "renewed" || !waited {
		t.Errorf("root's kubeconfig %q, waited %v: want admin.conf's copy and a wait for the API server", b, waited)
	}

	failing := hosttest.NewStub(t)
	failing.Register(`^/usr/local/bin/kubeadm certs renew all$`, "", os.ErrPermission)
	if err := Renew(context.Background(), RenewOptions{Root: host.Root(root), Exec: failing, Console: &console, Node: "cp1"}); err == nil {
		t.Error("a failed kubeadm certs renew: no error")
	}
}
