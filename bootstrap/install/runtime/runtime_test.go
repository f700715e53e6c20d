package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/internal/golden"
)

// cases are the registry settings the golden files cover.
var cases = []struct {
	name   string
	params Params
}{
	{"default", Params{SandboxImage: "registry.k8s.io/pause:3.10.2"}},
	{"registries", Params{SandboxImage: "reg.example.com/pause:3.10.2", Registry: cluster.Registry{
		PrivateRegistry:    "reg.example.com",
		RegistryMirrors:    []string{"https://mirror.example.com/", "http://10.0.0.9:5000"},
		InsecureRegistries: []string{"10.0.0.9:5000", "harbor.local"},
		Auths: map[string]cluster.Auth{
			"https://reg.example.com": {Username: "admin", Password: `pa"ss\word'`},
			"docker.io":               {Username: "hubuser", Password: "hubpass"},
			"empty.example.com":       {},
		},
	}}},
	// containerd 1.7 (Kubernetes below v1.30) reads config version 2.
	{"containerd-1.7", Params{SandboxImage: "registry.k8s.io/pause:3.9", ContainerdVersion: "v1.7.35", Registry: cluster.Registry{
		PrivateRegistry: "reg.example.com",
		Auths:           map[string]cluster.Auth{"reg.example.com": {Username: "admin", Password: "secret"}},
	}}},
	{"http-private-registry", Params{SandboxImage: "dockerhub.kubekey.local/kubesphereio/pause:3.9", Registry: cluster.Registry{
		PrivateRegistry: "http://dockerhub.kubekey.local", NamespaceOverride: "kubesphereio",
	}}},
}

// caseParams is the params of the named case (by name: cases are added in the middle).
func caseParams(t *testing.T, name string) Params {
	t.Helper()
	for _, c := range cases {
		if c.name == name {
			return c.params
		}
	}
	t.Fatalf("no case %q", name)
	return Params{}
}

// goldenName maps a node path to a file name under testdata/<case>/.
func goldenName(c, nodePath string) string {
	return filepath.Join(c, strings.ReplaceAll(strings.TrimPrefix(nodePath, "/"), ":", "_"))
}

func TestFilesGolden(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files, err := Files(c.params)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				// The units and crictl.yaml do not depend on the parameters: one copy.
				if c.name != "default" && !strings.HasPrefix(f.Path, "/etc/containerd/") {
					continue
				}
				golden.Assert(t, goldenName(c.name, f.Path), f.Data)
			}
		})
	}
}

func TestFileModes(t *testing.T) {
	for _, c := range cases {
		files, err := Files(c.params)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			want := os.FileMode(0o644)
			if f.Path == ContainerdConfigPath && (c.name == "registries" || c.name == "containerd-1.7") {
				want = 0o600 // holds registry passwords
			}
			if f.Mode != want {
				t.Errorf("%s: %s mode %o, want %o", c.name, f.Path, f.Mode, want)
			}
		}
	}
}

func TestHostsFilesList(t *testing.T) {
	files, err := Files(caseParams(t, "registries"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		if strings.HasPrefix(f.Path, CertsDir) {
			got = append(got, f.Path)
			if !IsManaged(f.Data) {
				t.Errorf("%s lacks the managed header", f.Path)
			}
		}
	}
	// reg.example.com is HTTPS: containerd needs no file for it.
	want := []string{
		"/etc/containerd/certs.d/docker.io/hosts.toml",
		"/etc/containerd/certs.d/10.0.0.9:5000/hosts.toml",
		"/etc/containerd/certs.d/harbor.local/hosts.toml",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("hosts files %v, want %v", got, want)
	}
}

func TestBadRegistries(t *testing.T) {
	for _, reg := range []cluster.Registry{
		{RegistryMirrors: []string{"mirror.example.com"}},
		{RegistryMirrors: []string{"ftp://mirror.example.com"}},
		{InsecureRegistries: []string{".."}},
	} {
		if _, err := HostsFiles(reg); err == nil {
			t.Errorf("%+v: no error", reg)
		}
	}
	if _, err := Files(Params{}); err == nil {
		t.Error("no sandbox image: no error")
	}
}

func TestTOMLStrings(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain`, `"plain"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"tab\there", `"tab\there"`},
		{"nl\nx", `"nl\nx"`},
		{"bell\x07", `"bell\u0007"`},
		{"ünïcode", `"ünïcode"`},
	}
	for _, tt := range tests {
		if got := tomlString(tt.in); got != tt.want {
			t.Errorf("tomlString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	keys := []struct{ in, want string }{
		{"SystemdCgroup", "SystemdCgroup"},
		{"config_path", "config_path"},
		{"io.containerd.cri.v1.images", "'io.containerd.cri.v1.images'"},
		{"10.0.0.9:5000", "'10.0.0.9:5000'"},
		{"it's", `"it's"`},
		{"", "''"},
	}
	for _, k := range keys {
		if got := tomlKey(k.in); got != k.want {
			t.Errorf("tomlKey(%q) = %s, want %s", k.in, got, k.want)
		}
	}
}
