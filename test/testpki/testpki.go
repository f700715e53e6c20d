// Package testpki gives tests an API-server stand-in: a TLS server on 127.0.0.1 whose
// certificate is signed by a cluster's CA, as kubeadm's kube-apiserver certificate is. Only
// tests import it.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
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
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/ksboot/ksboot/cluster"
)

// ServingCert signs a server certificate for 127.0.0.1 with the cluster CA in s.
func ServingCert(t testing.TB, s *cluster.Secrets) tls.Certificate {
	t.Helper()
	ca, caKey := clusterCA(t, s)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// APIServer starts a TLS server on 127.0.0.1 with a certificate from ServingCert; it is closed
// when the test ends.
func APIServer(t testing.TB, s *cluster.Secrets) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ServingCert(t, s)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// AdminKubeconfig writes to path a kubeconfig for server ("https://10.77.0.10:6443") with a
// client certificate in system:masters signed by the cluster CA in s, as kubeadm's admin.conf
// would hold. It is valid for a day.
func AdminKubeconfig(t testing.TB, s *cluster.Secrets, server, path string) {
	t.Helper()
	ClientKubeconfig(t, s, server, path, "ksboot-e2e-admin", "system:masters")
}

// ClientKubeconfig writes to path a kubeconfig for server with a client certificate of the
// user commonName in groups, signed by the cluster CA in s ("system:node:w1" in
// "system:nodes" is what a kubelet's kubelet.conf holds). It is valid for a day.
func ClientKubeconfig(t testing.TB, s *cluster.Secrets, server, path, commonName string, groups ...string) {
	t.Helper()
	ca, caKey := clusterCA(t, s)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: commonName, Organization: groups},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["ksboot"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: s.CACert}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		ClientKeyData:         pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	kc.Contexts["admin@ksboot"] = &clientcmdapi.Context{Cluster: "ksboot", AuthInfo: "admin"}
	kc.CurrentContext = "admin@ksboot"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
}

// clusterCA parses the cluster CA certificate and key from s.
func clusterCA(t testing.TB, s *cluster.Secrets) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	caBlock, _ := pem.Decode(s.CACert)
	keyBlock, _ := pem.Decode(s.CAKey)
	if caBlock == nil || keyBlock == nil {
		t.Fatal("the cluster secrets hold no PEM CA certificate and key")
	}
	ca, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParsePKCS1PrivateKey(keyBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return ca, caKey
}
