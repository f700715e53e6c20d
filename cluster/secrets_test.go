package cluster

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestSecretsCreatedOnceAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo-secrets")
	s1, created, err := LoadOrCreateSecrets(dir)
	if err != nil || !created {
		t.Fatalf("first call: created=%v err=%v", created, err)
	}
	s2, created, err := LoadOrCreateSecrets(dir)
	if err != nil || created {
		t.Fatalf("second call: created=%v err=%v", created, err)
	}
	if string(s1.CACert) != string(s2.CACert) || s1.BootstrapToken != s2.BootstrapToken {
		t.Error("secrets were not reused")
	}
	if !regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`).MatchString(s1.BootstrapToken) {
		t.Errorf("token %q has the wrong shape", s1.BootstrapToken)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(s1.CertificateKey) {
		t.Errorf("certificate key has the wrong shape")
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %o", st.Mode().Perm())
	}
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() && info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 0600", p, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// An incomplete directory is refused rather than silently completed.
	if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSecrets(dir); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("want an incomplete-directory error, got %v", err)
	}
}

func TestCAPinIsSPKIHash(t *testing.T) {
	s, err := NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(s.CACert)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsCA {
		t.Error("CA certificate is not a CA")
	}
	pin, err := s.CAPin()
	if err != nil {
		t.Fatal(err)
	}
	if pin != CAPin(c) || !strings.HasPrefix(pin, "sha256:") || len(pin) != 7+64 {
		t.Errorf("pin %q", pin)
	}
	if got := ClusterID(pin); len(got) != 16 || !strings.HasPrefix(pin, "sha256:"+got) {
		t.Errorf("cluster id %q", got)
	}
}

func TestWorkerConfigHasNoKeys(t *testing.T) {
	c := Sample(SampleOptions{})
	s, err := NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := NodeConfigFor(c, s, "node1")
	if err != nil {
		t.Fatal(err)
	}
	if !cp.Node.Init || cp.Secrets.CAKey == "" || cp.Secrets.ServiceAccountKey == "" {
		t.Errorf("control plane lacks init flag or keys: %+v", cp.Node)
	}
	for _, mk := range []func() (*NodeConfig, error){
		func() (*NodeConfig, error) { return NodeConfigFor(c, s, "node2") },
		func() (*NodeConfig, error) { return GenericWorkerConfig(c, s) },
	} {
		w, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		data, err := w.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "PRIVATE KEY") {
			t.Errorf("worker config %q carries a private key", w.Node.Name)
		}
		if w.Secrets.CACertHash != cp.Secrets.CACertHash {
			t.Error("worker pin differs from the control plane's")
		}
		back, err := ParseNodeConfig("node.yaml", data)
		if err != nil {
			t.Fatalf("node config does not parse back: %v", err)
		}
		if back.Secrets.BootstrapToken != s.BootstrapToken {
			t.Error("token lost in round trip")
		}
	}
	red, _ := cp.Redacted().Marshal()
	if strings.Contains(string(red), "PRIVATE KEY") || strings.Contains(string(red), s.BootstrapToken) {
		t.Error("Redacted() leaks a secret")
	}
}
