package kubeadm

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/ksboot/ksboot/cluster"
	"k8s.io/client-go/util/keyutil"
)

// PKIDir is kubeadm's certificate directory, relative to the root WritePKI is given.
const PKIDir = "etc/kubernetes/pki"

// pkiPair is one key pair of the seed and the kubeadm file names it goes to.
type pkiPair struct {
	what              string // for messages
	certFile, keyFile string // relative to PKIDir
	cert, key         string // PEM from the node config
	publicKey         bool   // cert is a PEM public key (sa.pub), not a certificate
}

// WritePKI places the cluster's shared key material from the seed in <root>/etc/kubernetes/pki,
// where kubeadm init reuses it instead of generating new CAs and kubeadm join --control-plane
// finds the certificates it would otherwise download: ca.crt/key, etcd/ca.crt/key,
// front-proxy-ca.crt/key and sa.key/sa.pub. It returns the paths written, relative to root.
//
// Only pairs whose key the node config carries are written, because a CA certificate without
// its key switches kubeadm to external-CA mode. Worker seeds carry no keys, so on workers
// nothing is written; that is required, as kubeadm's join preflight refuses a worker that
// already has /etc/kubernetes/pki/ca.crt.
//
// Directories are 0700 and keys 0600 (certificates 0644, as kubeadm writes them); every file is
// written to a temporary file in its directory and renamed into place, so a crash never leaves
// a truncated key for kubeadm to trip over. Running it again rewrites the same files. Each pair
// is checked before anything is written: a certificate and key that do not match would
// otherwise surface much later as a TLS failure between control-plane components.
func WritePKI(root string, s cluster.NodeSecrets) ([]string, error) {
	pairs := []pkiPair{
		{what: "cluster CA", certFile: "ca.crt", keyFile: "ca.key", cert: s.CACert, key: s.CAKey},
		{what: "etcd CA", certFile: "etcd/ca.crt", keyFile: "etcd/ca.key", cert: s.EtcdCACert, key: s.EtcdCAKey},
		{what: "front-proxy CA", certFile: "front-proxy-ca.crt", keyFile: "front-proxy-ca.key", cert: s.FrontProxyCACert, key: s.FrontProxyCAKey},
		{what: "service-account key", certFile: "sa.pub", keyFile: "sa.key", cert: s.ServiceAccountPub, key: s.ServiceAccountKey, publicKey: true},
	}
	var todo []pkiPair
	for _, p := range pairs {
		if p.key == "" {
			continue
		}
		if err := p.check(); err != nil {
			return nil, err
		}
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return nil, nil
	}
	pki := filepath.Join(root, PKIDir)
	// The parents are ordinary system directories (/etc, /etc/kubernetes): create them as the
	// system would if they are missing; only the PKI directories themselves are private.
	if err := os.MkdirAll(filepath.Dir(pki), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", filepath.Dir(pki), err)
	}
	var written []string
	for _, p := range todo {
		for _, f := range []struct {
			name, data string
			mode       os.FileMode
		}{
			{p.keyFile, p.key, 0o600},
			{p.certFile, p.cert, certMode(p.certFile)},
		} {
			path := filepath.Join(pki, f.name)
			if err := privateDirs(pki, filepath.Dir(path)); err != nil {
				return written, err
			}
			if err := writeFileAtomic(path, []byte(f.data), f.mode); err != nil {
				return written, fmt.Errorf("writing the %s to %s: %w", p.what, path, err)
			}
			written = append(written, filepath.Join(PKIDir, f.name))
		}
	}
	return written, nil
}

// certMode is 0644 for certificates, 0600 for anything else (sa.pub, as kubeadm writes it).
func certMode(name string) os.FileMode {
	if strings.HasSuffix(name, ".crt") {
		return 0o644
	}
	return 0o600
}

// check verifies that the pair parses and belongs together.
func (p pkiPair) check() error {
	if p.cert == "" {
		return fmt.Errorf("node config: the %s key is present but its %s is missing", p.what, p.certFile)
	}
	if !p.publicKey {
		if _, err := tls.X509KeyPair([]byte(p.cert), []byte(p.key)); err != nil {
			return fmt.Errorf("node config: the %s certificate and key do not form a pair: %w", p.what, err)
		}
		block, _ := pem.Decode([]byte(p.cert))
		c, err := x509.ParseCertificate(block.Bytes) // X509KeyPair has parsed it already
		if err != nil {
			return fmt.Errorf("node config: parsing the %s certificate: %w", p.what, err)
		}
		if !c.IsCA {
			return fmt.Errorf("node config: the %s certificate (%s) is not a CA certificate", p.what, c.Subject.CommonName)
		}
		return nil
	}
	key, err := keyutil.ParsePrivateKeyPEM([]byte(p.key))
	if err != nil {
		return fmt.Errorf("node config: parsing the %s: %w", p.what, err)
	}
	pubs, err := keyutil.ParsePublicKeysPEM([]byte(p.cert))
	if err != nil {
		return fmt.Errorf("node config: parsing the %s's public half: %w", p.what, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok || len(pubs) != 1 || !publicKeysEqual(signer.Public(), pubs[0]) {
		return fmt.Errorf("node config: the %s's public key (sa.pub) does not belong to its private key (sa.key)", p.what)
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	if eq, ok := a.(interface{ Equal(crypto.PublicKey) bool }); ok {
		return eq.Equal(b)
	}
	return reflect.DeepEqual(a, b)
}

// privateDirs creates dir (which is pki or below it) and every directory between, 0700, and
// tightens an existing one that is wider: kubeadm's PKI holds private keys.
func privateDirs(pki, dir string) error {
	rel, err := filepath.Rel(pki, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("%s is outside %s", dir, pki)
	}
	cur := pki
	for _, part := range append([]string{"."}, strings.Split(rel, string(filepath.Separator))...) {
		cur = filepath.Join(cur, part)
		err := os.Mkdir(cur, 0o700)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("creating %s: %w", cur, err)
		}
		st, err := os.Stat(cur)
		if err != nil {
			return fmt.Errorf("creating %s: %w", cur, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", cur)
		}
		if st.Mode().Perm() != 0o700 {
			if err := os.Chmod(cur, 0o700); err != nil {
				return fmt.Errorf("making %s private: %w", cur, err)
			}
		}
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path with the final mode, syncs it
// and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
