package discovery

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/ksboot/ksboot/cluster"
)

// testCA is a cluster CA made for a test. ECDSA keeps key generation fast under -race; the
// verification code does not care about the key type (cluster.NewSecrets makes RSA, tested once).
type testCA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

func (c *testCA) Pin() string { return cluster.CAPin(c.Cert) }
func (c *testCA) ID() string  { return cluster.ClusterID(c.Pin()) }

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return &testCA{Cert: c, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
}

// parseTestCA reads a CA written by newTestCA (helper processes get it through a file).
func parseTestCA(certPEM, keyPEM []byte) (*testCA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("bad CA PEM")
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	return &testCA{Cert: c, Key: k.(crypto.Signer), CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

type certOpts struct {
	notBefore, notAfter time.Time
	usage               []x509.ExtKeyUsage
}

// serverCert issues a kube-apiserver-like serving certificate for ips.
func (c *testCA) serverCert(ips []net.IP, o certOpts) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	if o.notBefore.IsZero() {
		o.notBefore, o.notAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	}
	if o.usage == nil {
		o.usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: o.notBefore, NotAfter: o.notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: o.usage, IPAddresses: ips, DNSNames: []string{"kubernetes", "lb.kubesphere.local"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, key.Public(), c.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// serveTLS runs a TLS server on addr (":0" style) with cert until the returned stop is called.
// Like kube-apiserver it completes the handshake and then serves nothing we need.
func serveTLS(addr string, cert tls.Certificate) (net.Listener, error) {
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Read(make([]byte, 1))
			}()
		}
	}()
	return ln, nil
}

func startTLS(t testing.TB, ca *testCA, o certOpts) string {
	t.Helper()
	cert, err := ca.serverCert([]net.IP{net.IPv4(127, 0, 0, 1)}, o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := serveTLS("127.0.0.1:0", cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}
