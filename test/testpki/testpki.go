// Package testpki gives tests an API-server stand-in: a TLS server on 127.0.0.1 whose
// certificate is signed by a cluster's CA, as kubeadm's kube-apiserver certificate is. Only
// tests import it.
package testpki

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
	"testing"
	"time"

	"github.com/ksboot/ksboot/cluster"
)

// ServingCert signs a server certificate for 127.0.0.1 with the cluster CA in s.
func ServingCert(t testing.TB, s *cluster.Secrets) tls.Certificate {
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
