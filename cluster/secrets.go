package cluster

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// Secrets is the cluster's key material, kept in a directory beside the cluster file so that
// seeds built on different days belong to the same cluster. The layout follows kubeadm's
// /etc/kubernetes/pki names so an operator recognises every file.
type Secrets struct {
	CACert            []byte // PEM
	CAKey             []byte // PEM
	EtcdCACert        []byte
	EtcdCAKey         []byte
	FrontProxyCACert  []byte
	FrontProxyCAKey   []byte
	ServiceAccountKey []byte // PEM private key (kubeadm's sa.key)
	ServiceAccountPub []byte // PEM public key (kubeadm's sa.pub)
	BootstrapToken    string // [a-z0-9]{6}.[a-z0-9]{16}
	CertificateKey    string // 64 hex characters, kubeadm's --certificate-key
}

// secretFiles is the on-disk layout: file name → field. Order matters only for messages.
func (s *Secrets) files() []struct {
	name string
	data *[]byte
} {
	return []struct {
		name string
		data *[]byte
	}{
		{"ca.crt", &s.CACert}, {"ca.key", &s.CAKey},
		{"etcd/ca.crt", &s.EtcdCACert}, {"etcd/ca.key", &s.EtcdCAKey},
		{"front-proxy-ca.crt", &s.FrontProxyCACert}, {"front-proxy-ca.key", &s.FrontProxyCAKey},
		{"sa.key", &s.ServiceAccountKey}, {"sa.pub", &s.ServiceAccountPub},
	}
}

const (
	tokenFile          = "bootstrap-token"
	certificateKeyFile = "certificate-key"
)

// SecretsDir is where the secrets of a cluster file live: "<dir of file>/<cluster name>-secrets".
func SecretsDir(clusterFile, clusterName string) string {
	return filepath.Join(filepath.Dir(clusterFile), clusterName+"-secrets")
}

// LoadOrCreateSecrets reads the secrets directory, creating it (0700, files 0600) with fresh
// material the first time. A directory that exists but lacks files is an error rather than being
// completed silently: mixing old and new CAs would split the cluster.
func LoadOrCreateSecrets(dir string) (s *Secrets, created bool, err error) {
	if _, statErr := os.Stat(dir); statErr == nil {
		s, err = ReadSecrets(dir)
		return s, false, err
	} else if !errors.Is(statErr, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("reading secrets directory %s: %w", dir, statErr)
	}
	s, err = NewSecrets()
	if err != nil {
		return nil, false, err
	}
	if err := s.write(dir); err != nil {
		return nil, false, err
	}
	return s, true, nil
}

// ReadSecrets reads an existing secrets directory and checks that it is complete and private.
func ReadSecrets(dir string) (*Secrets, error) {
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	s := &Secrets{}
	for _, f := range s.files() {
		data, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return nil, fmt.Errorf("secrets directory %s is incomplete: %w (restore it from backup; a new CA would make a new cluster)", dir, err)
		}
		*f.data = data
	}
	var err error
	if s.BootstrapToken, err = readToken(dir); err != nil {
		return nil, err
	}
	ck, err := os.ReadFile(filepath.Join(dir, certificateKeyFile))
	if err != nil {
		return nil, fmt.Errorf("secrets directory %s is incomplete: %w", dir, err)
	}
	s.CertificateKey = strings.TrimSpace(string(ck))
	if _, err := s.CAPin(); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "ca.crt"), err)
	}
	return s, nil
}

// checkPrivateDir checks that the secrets directory exists and that only its owner can use it.
func checkPrivateDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("reading secrets directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("secrets directory %s is not a directory", dir)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("secrets directory %s is readable by others (mode %o); run chmod -R go-rwx %s", dir, st.Mode().Perm(), dir)
	}
	return nil
}

// readToken reads and checks the bootstrap token file of a secrets directory.
func readToken(dir string) (string, error) {
	path := filepath.Join(dir, tokenFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secrets directory %s is incomplete: %w", dir, err)
	}
	tok := strings.TrimSpace(string(data))
	if !bootstraputil.IsValidBootstrapToken(tok) {
		return "", fmt.Errorf("%s: the bootstrap token is malformed (want [a-z0-9]{6}.[a-z0-9]{16})", path)
	}
	return tok, nil
}

// ReadBootstrapToken returns the bootstrap token kept in an existing secrets directory.
func ReadBootstrapToken(dir string) (string, error) {
	if err := checkPrivateDir(dir); err != nil {
		return "", err
	}
	return readToken(dir)
}

// WriteBootstrapToken replaces the bootstrap token of an existing secrets directory, for
// `ksboot token rotate`; seeds built afterwards carry the new token. The token goes to a
// temporary file (0600) in the directory, which is synced and renamed over the old file, and
// the directory is synced after the rename: at any moment, crash or not, the file holds either
// the old or the new token in full. Nothing of the old token is kept. An error from the final
// directory sync comes after the rename; ReadBootstrapToken then tells which token is there.
func WriteBootstrapToken(dir, token string) error {
	if !bootstraputil.IsValidBootstrapToken(token) {
		// Never echo the value: it is a secret.
		return errors.New("writing the bootstrap token: not a token of the form [a-z0-9]{6}.[a-z0-9]{16}")
	}
	if err := checkPrivateDir(dir); err != nil {
		return err
	}
	path := filepath.Join(dir, tokenFile)
	f, err := os.CreateTemp(dir, "."+tokenFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			_ = os.Remove(tmp)
		}
	}()
	write := func() error {
		if err := f.Chmod(0o600); err != nil {
			return err
		}
		if _, err := f.WriteString(token + "\n"); err != nil {
			return err
		}
		return f.Sync()
	}
	if err := write(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("replacing %s: the new token is in place, but syncing %s failed: %w", path, dir, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// NewSecrets makes fresh cluster key material: three CAs, the service-account key pair, a
// bootstrap token and a certificate key.
func NewSecrets() (*Secrets, error) {
	s := &Secrets{}
	var err error
	if s.CACert, s.CAKey, err = newCA("kubernetes"); err != nil {
		return nil, err
	}
	if s.EtcdCACert, s.EtcdCAKey, err = newCA("etcd-ca"); err != nil {
		return nil, err
	}
	if s.FrontProxyCACert, s.FrontProxyCAKey, err = newCA("front-proxy-ca"); err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating the service-account key: %w", err)
	}
	if s.ServiceAccountKey, err = keyutil.MarshalPrivateKeyToPEM(saKey); err != nil {
		return nil, fmt.Errorf("encoding the service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encoding the service-account public key: %w", err)
	}
	s.ServiceAccountPub = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	if s.BootstrapToken, err = bootstraputil.GenerateBootstrapToken(); err != nil {
		return nil, fmt.Errorf("generating the bootstrap token: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating the certificate key: %w", err)
	}
	s.CertificateKey = hex.EncodeToString(key)
	return s, nil
}

// newCA makes a self-signed CA the way kubeadm does (RSA 2048, ten years).
func newCA(commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the %s key: %w", commonName, err)
	}
	c, err := cert.NewSelfSignedCACert(cert.Config{CommonName: commonName}, crypto.Signer(key))
	if err != nil {
		return nil, nil, fmt.Errorf("signing the %s certificate: %w", commonName, err)
	}
	keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the %s key: %w", commonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: cert.CertificateBlockType, Bytes: c.Raw}), keyPEM, nil
}

// Save writes the secrets as a new secrets directory (0700, files 0600), atomically. An
// existing directory is refused: it may hold another cluster's keys.
func (s *Secrets) Save(dir string) error {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("saving secrets: %s exists already", dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("saving secrets: %w", err)
	}
	return s.write(dir)
}

// write creates dir atomically: everything goes to a private temporary directory that is renamed
// into place, so a failure never leaves a half-written set of keys.
func (s *Secrets) write(dir string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, ".secrets-*")
	if err != nil {
		return fmt.Errorf("creating secrets directory: %w", err)
	}
	defer os.RemoveAll(tmp) // no-op after a successful rename
	if err := os.Chmod(tmp, 0o700); err != nil {
		return fmt.Errorf("creating secrets directory: %w", err)
	}
	all := append(s.files(),
		struct {
			name string
			data *[]byte
		}{tokenFile, ptr([]byte(s.BootstrapToken + "\n"))},
		struct {
			name string
			data *[]byte
		}{certificateKeyFile, ptr([]byte(s.CertificateKey + "\n"))})
	for _, f := range all {
		p := filepath.Join(tmp, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("creating secrets directory: %w", err)
		}
		if err := os.WriteFile(p, *f.data, 0o600); err != nil {
			return fmt.Errorf("writing secret %s: %w", f.name, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("creating secrets directory %s: %w", dir, err)
	}
	return nil
}

func ptr(b []byte) *[]byte { return &b }

// CAPin returns kubeadm's discovery-token-ca-cert-hash for the cluster CA:
// "sha256:" + hex SHA-256 of the CA certificate's SubjectPublicKeyInfo.
func (s *Secrets) CAPin() (string, error) {
	return CAPinFromPEM(s.CACert)
}

// CAPinFromPEM computes the pin of the first certificate in a PEM block.
func CAPinFromPEM(certPEM []byte) (string, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != cert.CertificateBlockType {
		return "", errors.New("no PEM certificate found")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("parsing the CA certificate: %w", err)
	}
	return CAPin(c), nil
}

// CAPin is the pin of a parsed certificate.
func CAPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ClusterID is the first 16 hex digits of the CA pin, announced over mDNS so that two clusters
// with the same name never mix.
func ClusterID(pin string) string {
	h := strings.TrimPrefix(pin, "sha256:")
	if len(h) > 16 {
		h = h[:16]
	}
	return h
}
