package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/cluster"
)

// servingCert signs a 127.0.0.1 serving certificate with the CA in s.
func servingCert(t *testing.T, s *cluster.Secrets) tls.Certificate {
	caBlock, _ := pem.Decode(s.CACert)
	ca, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	keyBlock, _ := pem.Decode(s.CAKey)
	caKey, err := x509.ParsePKCS1PrivateKey(keyBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestDiscoverStatic(t *testing.T) {
	dir := t.TempDir()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	ours, err := loadSecrets(filepath.Join(dir, "demo-secrets"))
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{servingCert(t, ours)}}
	srv.StartTLS()
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	file := filepath.Join(dir, "demo.yaml")
	body := "apiVersion: ksboot.dev/v1alpha1\nkind: Cluster\nmetadata: {name: demo}\nspec:\n" +
		"  hosts: [{name: cp1, address: " + host + "/8, interface: lo}]\n" +
		"  roleGroups: {etcd: [cp1], control-plane: [cp1]}\n" +
		"  controlPlaneEndpoint: {address: " + host + ", port: " + port + "}\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := ksboot(t, "discover", "-f", file, "--timeout", "10s")
	if code != 0 || strings.TrimSpace(out) != srv.Listener.Addr().String() {
		t.Fatalf("exit %d, out %q, err %s", code, out, errOut)
	}
	// Another cluster's secrets: the same server no longer verifies.
	other := filepath.Join(dir, "other-secrets")
	if _, _, err := cluster.LoadOrCreateSecrets(other); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = ksboot(t, "discover", "-f", file, "--secrets", other, "--timeout", "3s")
	if code != exitFailure || !strings.Contains(errOut, "no verified control plane") {
		t.Fatalf("foreign CA: exit %d, %s", code, errOut)
	}
	t.Logf("foreign CA message: %s", errOut)
}

func loadSecrets(dir string) (*cluster.Secrets, error) {
	s, _, err := cluster.LoadOrCreateSecrets(dir)
	return s, err
}
