package artifacts_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/artifactstest"
	"github.com/ksboot/ksboot/cluster"
)

func TestMirrorURLs(t *testing.T) {
	a := func(name, version string) artifacts.Artifact {
		return artifacts.Artifact{Name: name, Version: version, Arch: "arm64"}
	}
	tests := []struct {
		name      string
		mirror    *artifacts.HTTPMirror
		artifact  artifacts.Artifact
		file, sum string
	}{
		{"kubeadm upstream", &artifacts.HTTPMirror{}, a("kubeadm", "v1.37.2"),
			"https://dl.k8s.io/release/v1.37.2/bin/linux/arm64/kubeadm",
			"https://dl.k8s.io/release/v1.37.2/bin/linux/arm64/kubeadm.sha256"},
		{"containerd upstream", &artifacts.HTTPMirror{}, a("containerd", "v2.4.2"),
			"https://github.com/containerd/containerd/releases/download/v2.4.2/containerd-2.4.2-linux-arm64.tar.gz",
			"https://github.com/containerd/containerd/releases/download/v2.4.2/containerd-2.4.2-linux-arm64.tar.gz.sha256sum"},
		{"runc upstream", &artifacts.HTTPMirror{}, a("runc", "1.5.2"),
			"https://github.com/opencontainers/runc/releases/download/v1.5.2/runc.arm64",
			"https://github.com/opencontainers/runc/releases/download/v1.5.2/runc.sha256sum"},
		{"crictl upstream", &artifacts.HTTPMirror{}, a("crictl", "v1.37.0"),
			"https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.37.0/crictl-v1.37.0-linux-arm64.tar.gz",
			"https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.37.0/crictl-v1.37.0-linux-arm64.tar.gz.sha256"},
		{"cni upstream", &artifacts.HTTPMirror{}, a("cni-plugins", "v1.10.0"),
			"https://github.com/containernetworking/plugins/releases/download/v1.10.0/cni-plugins-linux-arm64-v1.10.0.tgz",
			"https://github.com/containernetworking/plugins/releases/download/v1.10.0/cni-plugins-linux-arm64-v1.10.0.tgz.sha256"},
		{"kubelet zone cn", &artifacts.HTTPMirror{Zone: "cn"}, a("kubelet", "v1.37.2"),
			"https://kubernetes-release.pek3b.qingstor.com/release/v1.37.2/bin/linux/arm64/kubelet",
			"https://kubernetes-release.pek3b.qingstor.com/release/v1.37.2/bin/linux/arm64/kubelet.sha256"},
		{"containerd zone cn", &artifacts.HTTPMirror{Zone: "cn"}, a("containerd", "v2.4.2"),
			"https://kubernetes-release.pek3b.qingstor.com/containerd/containerd/releases/download/v2.4.2/containerd-2.4.2-linux-arm64.tar.gz",
			"https://kubernetes-release.pek3b.qingstor.com/containerd/containerd/releases/download/v2.4.2/containerd-2.4.2-linux-arm64.tar.gz.sha256sum"},
		{"runc zone cn", &artifacts.HTTPMirror{Zone: "cn"}, a("runc", "v1.5.2"),
			"https://kubernetes-release.pek3b.qingstor.com/opencontainers/runc/releases/download/v1.5.2/runc.arm64",
			"https://kubernetes-release.pek3b.qingstor.com/opencontainers/runc/releases/download/v1.5.2/runc.sha256sum"},
		{"crictl zone cn", &artifacts.HTTPMirror{Zone: "cn"}, a("crictl", "v1.37.0"),
			"https://kubernetes-release.pek3b.qingstor.com/cri-tools/releases/download/v1.37.0/crictl-v1.37.0-linux-arm64.tar.gz",
			"https://kubernetes-release.pek3b.qingstor.com/cri-tools/releases/download/v1.37.0/crictl-v1.37.0-linux-arm64.tar.gz.sha256"},
		{"cni zone cn", &artifacts.HTTPMirror{Zone: "cn"}, a("cni-plugins", "v1.10.0"),
			"https://containernetworking.pek3b.qingstor.com/plugins/releases/download/v1.10.0/cni-plugins-linux-arm64-v1.10.0.tgz",
			"https://containernetworking.pek3b.qingstor.com/plugins/releases/download/v1.10.0/cni-plugins-linux-arm64-v1.10.0.tgz.sha256"},
		{"mirror base keeps upstream paths", artifacts.NewHTTPMirror(cluster.Artifacts{Mirror: "http://10.0.0.5/k8s/"}, "cn", nil), a("kubectl", "v1.37.2"),
			"http://10.0.0.5/k8s/release/v1.37.2/bin/linux/arm64/kubectl",
			"http://10.0.0.5/k8s/release/v1.37.2/bin/linux/arm64/kubectl.sha256"},
		{"mirror base for github assets", artifacts.NewHTTPMirror(cluster.Artifacts{Mirror: "http://10.0.0.5/k8s"}, "", nil), a("cni-plugins", "v1.10.0"),
			"http://10.0.0.5/k8s/containernetworking/plugins/releases/download/v1.10.0/cni-plugins-linux-arm64-v1.10.0.tgz",
			"http://10.0.0.5/k8s/containernetworking/plugins/releases/download/v1.10.0/cni-plugins-linux-arm64-v1.10.0.tgz.sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file, sum, err := tt.mirror.URLs(tt.artifact)
			if err != nil {
				t.Fatal(err)
			}
			if file != tt.file || sum != tt.sum {
				t.Errorf("URLs =\n  %s\n  %s\nwant\n  %s\n  %s", file, sum, tt.file, tt.sum)
			}
		})
	}
	if _, _, err := (&artifacts.HTTPMirror{}).URLs(a("helm", "v3")); !errors.Is(err, artifacts.ErrNotFound) {
		t.Errorf("unknown component: got %v, want ErrNotFound", err)
	}
}

func TestParseChecksum(t *testing.T) {
	const (
		a = "0f1f4b0a9c1b3d7e7b55bb5f7dbd2b6b7f1d5e4e9e3f0a2b1c4d5e6f708192a3"
		b = "1f1f4b0a9c1b3d7e7b55bb5f7dbd2b6b7f1d5e4e9e3f0a2b1c4d5e6f708192a3"
	)
	tests := []struct {
		name, data, file, want string
	}{
		{"bare digest", a + "\n", "kubeadm", a},
		{"bare digest upper case", strings.ToUpper(a), "kubeadm", a},
		{"sha256sum line", a + "  cni.tgz\n", "cni.tgz", a},
		{"binary mode marker", a + " *cni.tgz\n", "cni.tgz", a},
		{"pick by name", a + "  runc.amd64\n" + b + "  runc.arm64\n", "runc.arm64", b},
		{"name with directory", a + "  ./bin/runc.arm64\n", "runc.arm64", a},
		{"other file only", a + "  runc.amd64\n", "runc.arm64", ""},
		{"not a digest", "hello\n", "x", ""},
		{"empty", "", "x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := artifacts.ParseChecksum([]byte(tt.data), tt.file)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("got %s, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func FuzzParseChecksum(f *testing.F) {
	f.Add([]byte("0f1f4b0a9c1b3d7e7b55bb5f7dbd2b6b7f1d5e4e9e3f0a2b1c4d5e6f708192a3  runc.amd64\n"), "runc.amd64")
	f.Add([]byte("0f1f4b0a9c1b3d7e7b55bb5f7dbd2b6b7f1d5e4e9e3f0a2b1c4d5e6f708192a3"), "kubeadm")
	f.Fuzz(func(t *testing.T, data []byte, file string) {
		sum, err := artifacts.ParseChecksum(data, file)
		if err == nil && len(sum) != 64 {
			t.Fatalf("accepted %q as a sha256", sum)
		}
	})
}

// fastMirror does not wait long between retries.
func fastMirror(base string) *artifacts.HTTPMirror {
	return &artifacts.HTTPMirror{Base: base, Attempts: 2, Backoff: time.Millisecond}
}

func TestMirrorFetch(t *testing.T) {
	fakes := artifactstest.Release(t, "v1.37.2", "amd64")
	kubeadm, runc := fakes[0], fakes[4]
	kubeadmFile, _, _ := artifacts.UpstreamURLs(kubeadm.Artifact)
	kubeadmPath := strings.TrimPrefix(kubeadmFile, "https://dl.k8s.io")

	// A port nothing listens on: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close()

	tests := []struct {
		name     string
		edit     func(files map[string][]byte)
		base     string
		artifact artifacts.Artifact
		wantErr  error
		wantMsg  []string
	}{
		{name: "good binary", artifact: kubeadm.Artifact},
		{name: "runc from the shared checksum file", artifact: runc.Artifact},
		{name: "wrong checksum", artifact: kubeadm.Artifact,
			edit:    func(f map[string][]byte) { f[kubeadmPath] = []byte("tampered") },
			wantErr: artifacts.ErrChecksum,
			wantMsg: []string{"installing kubeadm v1.37.2 (linux/amd64) from http://127.0.0.1:", kubeadmPath + ": sha256 mismatch: got "}},
		{name: "file missing", artifact: kubeadm.Artifact,
			edit:    func(f map[string][]byte) { delete(f, kubeadmPath) },
			wantErr: artifacts.ErrNotFound,
			wantMsg: []string{kubeadmPath + ": not found: HTTP 404 Not Found"}},
		{name: "checksum missing", artifact: kubeadm.Artifact,
			edit:    func(f map[string][]byte) { delete(f, kubeadmPath+".sha256") },
			wantErr: artifacts.ErrNotFound,
			wantMsg: []string{"fetching checksum http://127.0.0.1:", kubeadmPath + ".sha256: not found"}},
		{name: "checksum file without the file", artifact: kubeadm.Artifact,
			edit:    func(f map[string][]byte) { f[kubeadmPath+".sha256"] = []byte("deadbeef  other\n") },
			wantMsg: []string{"no sha256 for kubeadm in it"}},
		{name: "connection refused", artifact: kubeadm.Artifact, base: refused,
			wantErr: artifacts.ErrUnreachable,
			wantMsg: []string{"installing kubeadm v1.37.2 (linux/amd64) from " + refused + kubeadmPath, "unreachable", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := artifactstest.MirrorFiles(t, fakes)
			if tt.edit != nil {
				tt.edit(files)
			}
			base, _ := artifactstest.Serve(t, files)
			if tt.base != "" {
				base = tt.base
			}
			dir := t.TempDir()
			path, sum, err := artifacts.Fetch(context.Background(), fastMirror(base), tt.artifact, dir)
			if tt.wantErr == nil && tt.wantMsg == nil {
				if err != nil {
					t.Fatal(err)
				}
				data, _ := os.ReadFile(path)
				var want []byte
				for _, f := range fakes {
					if f.Artifact == tt.artifact {
						want = f.Data
					}
				}
				if string(data) != string(want) || sum != artifactstest.SHA256(want) {
					t.Errorf("fetched %q (sha256 %s), want %q", data, sum, want)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			// Nothing half-fetched is left behind.
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("left %d files in the download directory", len(entries))
			}
		})
	}
}

func TestMirrorRetriesServerErrors(t *testing.T) {
	fakes := artifactstest.Release(t, "v1.37.2", "amd64")
	files := artifactstest.MirrorFiles(t, fakes)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every path fails once with 503, then works.
		if calls.Add(1)%2 == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write(files[r.URL.Path])
	}))
	defer srv.Close()
	if _, _, err := artifacts.Fetch(context.Background(), fastMirror(srv.URL), fakes[0].Artifact, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 4 {
		t.Errorf("made %d requests, want 4 (checksum and file, each retried once)", calls.Load())
	}
}
