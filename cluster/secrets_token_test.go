package cluster

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// TestWriteBootstrapToken replaces the token of a secrets directory the way `ksboot token
// rotate` does: the new token is in place, 0600, with no trace of the old one and no temporary
// file left; every other file is untouched; and seeds built from the directory afterwards
// carry the new token.
func TestWriteBootstrapToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sample-secrets")
	old, _, err := LoadOrCreateSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	before := secretsDirFiles(t, dir)
	tok, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteBootstrapToken(dir, tok); err != nil {
		t.Fatal(err)
	}

	after := secretsDirFiles(t, dir)
	if len(after) != len(before) {
		t.Errorf("files before %d, after %d (a temporary or backup file left?): %v", len(before), len(after), fileNames(after))
	}
	for name, data := range before {
		if name == tokenFile {
			continue
		}
		if !bytes.Equal(after[name], data) {
			t.Errorf("%s changed", name)
		}
	}
	if got := string(after[tokenFile]); got != tok+"\n" {
		t.Errorf("token file holds %d bytes, want the new token and a newline", len(got))
	}
	for name, data := range after {
		if bytes.Contains(data, []byte(old.BootstrapToken)) {
			t.Errorf("%s still holds the old token", name)
		}
	}
	st, err := os.Stat(filepath.Join(dir, tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %o, want 0600", st.Mode().Perm())
	}
	if got, err := ReadBootstrapToken(dir); err != nil || got != tok {
		t.Errorf("ReadBootstrapToken: same token %v, err %v", got == tok, err)
	}

	// A build after the rotation: every seed, of every role, carries the new token.
	s, created, err := LoadOrCreateSecrets(dir)
	if err != nil || created {
		t.Fatalf("reloading: created %v, err %v", created, err)
	}
	if !bytes.Equal(s.CACert, old.CACert) || s.CertificateKey != old.CertificateKey {
		t.Error("the rotation changed the CA or the certificate key")
	}
	c := Sample(SampleOptions{})
	var ncs []*NodeConfig
	for _, h := range c.Spec.Hosts {
		nc, err := NodeConfigFor(c, s, h.Name)
		if err != nil {
			t.Fatal(err)
		}
		ncs = append(ncs, nc)
	}
	g, err := GenericWorkerConfig(c, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, nc := range append(ncs, g) {
		data, err := nc.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if nc.Secrets.BootstrapToken != tok || !bytes.Contains(data, []byte(tok)) || bytes.Contains(data, []byte(old.BootstrapToken)) {
			t.Errorf("node config of %q does not carry the new token alone", nc.Node.Name)
		}
	}
}

// TestWriteBootstrapTokenRefuses leaves the directory as it was when the token or the
// directory is wrong, and never echoes the token.
func TestWriteBootstrapTokenRefuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sample-secrets")
	if _, _, err := LoadOrCreateSecrets(dir); err != nil {
		t.Fatal(err)
	}
	before := secretsDirFiles(t, dir)
	good, _ := bootstraputil.GenerateBootstrapToken()

	for _, tc := range []struct {
		name, dir, token, want string
		is                     error
	}{
		{name: "malformed token", dir: dir, token: "ABCDEF.0123456789abcdef", want: "not a token of the form"},
		{name: "missing directory", dir: filepath.Join(t.TempDir(), "none-secrets"), token: good, want: "none-secrets", is: fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteBootstrapToken(tc.dir, tc.token)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Error("the error shows the token")
			}
		})
	}
	t.Run("directory readable by others", func(t *testing.T) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		if err := WriteBootstrapToken(dir, good); err == nil || !strings.Contains(err.Error(), "readable by others") {
			t.Fatalf("err %v, want a refusal of the open directory", err)
		}
	})
	if after := secretsDirFiles(t, dir); !sameFiles(before, after) {
		t.Errorf("a refused write changed the directory: %v", fileNames(after))
	}
}

// TestSecretsSave writes existing secrets as a new directory that reads back the same, and
// refuses to overwrite one.
func TestSecretsSave(t *testing.T) {
	s, err := NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "copy-secrets")
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.BootstrapToken != s.BootstrapToken || !bytes.Equal(back.CAKey, s.CAKey) {
		t.Error("saved secrets read back differently")
	}
	if err := s.Save(dir); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("second Save: %v, want a refusal", err)
	}
}

// secretsDirFiles maps every file below dir (relative name) to its content.
func secretsDirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(b[k], v) {
			return false
		}
	}
	return true
}

func fileNames(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
