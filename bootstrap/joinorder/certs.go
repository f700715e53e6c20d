package joinorder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"k8s.io/client-go/util/keyutil"

	"github.com/ksboot/ksboot/cluster"
)

// EtcdClientCommonName is the common name of the etcd client certificate: the one kubeadm gives
// its etcd health-check client (etcd/healthcheck-client.crt), since that is all it does.
// kubeadm's etcd has no authentication of its own, so any certificate of the etcd CA is
// admitted; the name only tells etcd's logs what it is.
const EtcdClientCommonName = "kube-etcd-healthcheck-client"

// apiClientCommonName names the API client in the API server's audit log; its group
// system:masters lets it read Nodes and pods before kubeadm's RBAC bindings exist.
func apiClientCommonName(node string) string { return "ksboot:join-order:" + node }

// credentials are one wait's client certificates, minted in memory from the seed's CA keys and
// never written anywhere.
type credentials struct {
	clusterCA       []byte // PEM, to verify API servers (client-go)
	clusterCAs      *x509.CertPool
	apiCert, apiKey []byte // PEM, for client-go
	apiPair         tls.Certificate
	etcdCAs         *x509.CertPool
	etcdPair        tls.Certificate
}

// mint makes the API and etcd client certificates of node, valid from the CA's own start (as
// kubeadm does, so clocks that disagree before NTP do no harm) until validFor after now.
func mint(s cluster.NodeSecrets, node string, now time.Time, validFor time.Duration) (*credentials, error) {
	if s.CAKey == "" || s.EtcdCAKey == "" {
		return nil, errors.New("this seed carries no cluster or etcd CA key: only control-plane seeds can check the other control planes")
	}
	c := &credentials{clusterCA: []byte(s.CACert)}
	var err error
	if c.apiCert, c.apiKey, c.clusterCAs, err = sign("cluster CA", s.CACert, s.CAKey, pkix.Name{
		CommonName: apiClientCommonName(node), Organization: []string{"system:masters"},
	}, now, validFor); err != nil {
		return nil, err
	}
	if c.apiPair, err = tls.X509KeyPair(c.apiCert, c.apiKey); err != nil {
		return nil, fmt.Errorf("the API client certificate: %w", err)
	}
	etcdCert, etcdKey, etcdCAs, err := sign("etcd CA", s.EtcdCACert, s.EtcdCAKey, pkix.Name{CommonName: EtcdClientCommonName}, now, validFor)
	if err != nil {
		return nil, err
	}
	if c.etcdPair, err = tls.X509KeyPair(etcdCert, etcdKey); err != nil {
		return nil, fmt.Errorf("the etcd client certificate: %w", err)
	}
	c.etcdCAs = etcdCAs
	return c, nil
}

// sign makes a client certificate for subject with a new P-256 key, signed by the CA (what),
// and returns it and its key as PEM with a pool holding the CA.
func sign(what, caCertPEM, caKeyPEM string, subject pkix.Name, now time.Time, validFor time.Duration) (certPEM, keyPEM []byte, pool *x509.CertPool, err error) {
	block, _ := pem.Decode([]byte(caCertPEM))
	if block == nil {
		return nil, nil, nil, fmt.Errorf("the %s certificate in the seed is not PEM", what)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the %s certificate in the seed: %w", what, err)
	}
	k, err := keyutil.ParsePrivateKeyPEM([]byte(caKeyPEM))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the %s key in the seed: %w", what, err)
	}
	caKey, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, nil, fmt.Errorf("the %s key in the seed cannot sign", what)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, nil, err
	}
	notAfter := now.Add(validFor)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, Subject: subject,
		NotBefore: ca.NotBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("signing a client certificate with the %s: %w", what, err)
	}
	keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, nil, err
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, pool, nil
}

// EtcdClientTLS is a client configuration for the cluster's etcd: a certificate of its etcd CA
// (EtcdClientCommonName), minted in memory and valid for validFor from now, and the CA to
// verify the members with. `ksboot node delete` removes a control plane's member with it.
func EtcdClientTLS(etcdCACert, etcdCAKey string, now time.Time, validFor time.Duration) (*tls.Config, error) {
	certPEM, keyPEM, pool, err := sign("etcd CA", etcdCACert, etcdCAKey, pkix.Name{CommonName: EtcdClientCommonName}, now, validFor)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("the etcd client certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
