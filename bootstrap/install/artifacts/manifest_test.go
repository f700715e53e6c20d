package artifacts

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestParseManifestExample(t *testing.T) {
	data, err := os.ReadFile("testdata/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest("testdata/manifest.json", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Artifacts) != 4 {
		t.Fatalf("got %d artifacts, want 4", len(m.Artifacts))
	}
	// The example is also what Marshal writes: `ksboot bundle` and the agent agree on the bytes.
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, data) {
		t.Errorf("Marshal differs from testdata/manifest.json:\n%s", out)
	}
	e, ok := m.Find(Artifact{Name: Containerd, Version: "2.4.2", Arch: "amd64", Kind: KindTarball})
	if !ok || e.Path != "containerd/containerd-2.4.2-linux-amd64.tar.gz" {
		t.Errorf("Find(containerd 2.4.2) = %+v, %v; a missing leading v must still match", e, ok)
	}
	if _, ok := m.Find(Artifact{Name: Kubeadm, Version: "v1.37.2", Arch: "arm64", Kind: KindBinary}); ok {
		t.Error("Find matched an amd64 entry for arm64")
	}
}

func TestParseManifestErrors(t *testing.T) {
	const sum = "0f1f4b0a9c1b3d7e7b55bb5f7dbd2b6b7f1d5e4e9e3f0a2b1c4d5e6f708192a3"
	entry := func(fields string) string {
		return `{"formatVersion": 1, "artifacts": [` + fields + `]}`
	}
	good := `{"name": "kubeadm", "version": "v1.37.2", "arch": "amd64", "kind": "binary", "path": "kubeadm", "sha256": "` + sum + `"}`
	tests := []struct {
		name, data, want string
	}{
		{"not json", `{`, "unexpected EOF"},
		{"trailing data", entry(good) + `{}`, "trailing data"},
		{"unknown field", `{"formatVersion": 1, "artifacts": [], "extra": true}`, `unknown field "extra"`},
		{"future format", `{"formatVersion": 2, "artifacts": []}`, "formatVersion 2 is not supported"},
		{"unknown kind", entry(strings.Replace(good, `"binary"`, `"zip"`, 1)), `kind "zip" is not one of`},
		{"bad digest", entry(strings.Replace(good, sum, "ABC", 1)), "is not 64 lowercase hex digits"},
		{"upper-case digest", entry(strings.Replace(good, sum, strings.ToUpper(sum), 1)), "is not 64 lowercase hex digits"},
		{"escaping path", entry(strings.Replace(good, `"path": "kubeadm"`, `"path": "../etc/passwd"`, 1)), "must be relative"},
		{"absolute path", entry(strings.Replace(good, `"path": "kubeadm"`, `"path": "/bin/kubeadm"`, 1)), "must be relative"},
		{"binary without arch", entry(strings.Replace(good, `"arch": "amd64", `, "", 1)), "a binary needs an arch"},
		{"unknown arch", entry(strings.Replace(good, `"amd64"`, `"x86_64"`, 1)), `arch "x86_64" is not amd64 or arm64`},
		{"duplicate", entry(good + "," + strings.Replace(good, `"v1.37.2"`, `"1.37.2"`, 1)), "duplicates artifacts[0]"},
		{"os on a binary", entry(strings.Replace(good, `"kind"`, `"os": "debian-12", "kind"`, 1)), "os is only for deb and rpm"},
		{"images on a binary", entry(strings.Replace(good, `"kind"`, `"images": ["x"], "kind"`, 1)), "images is only for kind image"},
		{"empty name", entry(strings.Replace(good, `"kubeadm", "version"`, `"", "version"`, 1)), "name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest("bundle/manifest.json", []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "reading bundle manifest bundle/manifest.json: ") {
				t.Errorf("error %q does not name the manifest", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
		})
	}
}

// FuzzParseManifest: the parser never panics, and whatever it accepts survives a
// Marshal/Parse round trip unchanged.
func FuzzParseManifest(f *testing.F) {
	data, err := os.ReadFile("testdata/manifest.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"formatVersion":1,"artifacts":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest("fuzz", data)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("accepted manifest does not marshal: %v", err)
		}
		m2, err := ParseManifest("fuzz", out)
		if err != nil {
			t.Fatalf("marshalled manifest does not parse: %v", err)
		}
		out2, _ := m2.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", out, out2)
		}
	})
}
