package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/artifactstest"
	"github.com/ksboot/ksboot/bootstrap/install/runtime"
	"github.com/ksboot/ksboot/cluster"
)

// installedFiles is every file Binaries installs, with its mode.
var installedFiles = map[string]os.FileMode{
	"/usr/local/bin/kubeadm":                 0o755,
	"/usr/local/bin/kubelet":                 0o755,
	"/usr/local/bin/kubectl":                 0o755,
	"/usr/local/bin/containerd":              0o755,
	"/usr/local/bin/containerd-shim-runc-v2": 0o755,
	"/usr/local/bin/containerd-stress":       0o755,
	"/usr/local/bin/ctr":                     0o755,
	"/usr/local/bin/crictl":                  0o755,
	"/usr/local/sbin/runc":                   0o755,
	"/opt/cni/bin/bridge":                    0o755,
	"/opt/cni/bin/host-local":                0o755,
	"/opt/cni/bin/loopback":                  0o755,
	"/opt/cni/bin/portmap":                   0o755,
	"/opt/cni/bin/LICENSE":                   0o644,
}

// mirrorFixture is a node whose cluster file points spec.artifacts.mirror at a fake release
// served on 127.0.0.1.
func mirrorFixture(t *testing.T, edit func(files map[string][]byte)) (*fixture, *artifactstest.Hits, string) {
	t.Helper()
	files := artifactstest.MirrorFiles(t, artifactstest.Release(t, k8sVersion, "amd64"))
	if edit != nil {
		edit(files)
	}
	base, hits := artifactstest.Serve(t, files)
	f := newFixture(t, func(c *cluster.Cluster) { c.Spec.Artifacts.Mirror = base })
	return f, hits, base
}

func TestBinariesFromMirror(t *testing.T) {
	f, hits, base := mirrorFixture(t, nil)
	ctx := context.Background()
	if err := Binaries(ctx, f.opts); err != nil {
		t.Fatal(err)
	}
	got := tree(t, f.root)
	for p, mode := range installedFiles {
		st, ok := got[p]
		if !ok {
			t.Errorf("%s not installed", p)
			continue
		}
		if st.mode.Perm() != mode {
			t.Errorf("%s: mode %v, want %v", p, st.mode.Perm(), mode)
		}
	}
	for _, a := range artifacts.Components(k8sVersion, "amd64") {
		st, ok := got[recordPath(a.Name)]
		if !ok || st.mode.Perm() != 0o600 {
			t.Errorf("record of %s: %v (present %v), want mode 0600", a.Name, st.mode, ok)
		}
	}
	if st := got[StateDir]; st.mode.Perm() != 0o700 {
		t.Errorf("%s: mode %v, want 0700", StateDir, st.mode.Perm())
	}
	if _, ok := got[DownloadDir]; ok {
		t.Errorf("%s left behind", DownloadDir)
	}
	noTemps(t, f.root)
	if want := "ksboot: install: binaries: installed kubeadm v1.37.2, kubelet v1.37.2, kubectl v1.37.2, containerd v2.4.2, runc v1.5.2, crictl v1.37.0, cni-plugins v1.10.0 from mirror " + base + "\n"; f.console.String() != want {
		t.Errorf("console:\n%q\nwant\n%q", f.console.String(), want)
	}

	// A second run finds everything in place and does not touch the network.
	before := hits.Total()
	f.console.Reset()
	if err := Binaries(ctx, f.opts); err != nil {
		t.Fatal(err)
	}
	if hits.Total() != before {
		t.Errorf("second run made %d requests, want none", hits.Total()-before)
	}
	if d := diffTrees(got, tree(t, f.root)); len(d) > 0 {
		t.Errorf("second run changed files: %v", d)
	}
	if !strings.Contains(f.console.String(), "already installed") {
		t.Errorf("console %q", f.console.String())
	}

	// A changed file is noticed and its artifact, only that one, installed again.
	os.WriteFile(f.root.Path("/usr/local/bin/ctr"), []byte("changed"), 0o755)
	before = hits.Total()
	if err := Binaries(ctx, f.opts); err != nil {
		t.Fatal(err)
	}
	if n := hits.Total() - before; n != 2 {
		t.Errorf("repair made %d requests, want 2 (containerd and its checksum)", n)
	}
	if d := diffTrees(got, tree(t, f.root)); len(d) > 0 {
		t.Errorf("repair did not restore the files: %v", d)
	}
}

func TestBinariesBadSource(t *testing.T) {
	kubelet := artifacts.Artifact{Name: "kubelet", Version: k8sVersion, Arch: "amd64", Kind: artifacts.KindBinary}
	kubeletURL, _, _ := artifacts.UpstreamURLs(kubelet)
	kubeletPath := strings.TrimPrefix(kubeletURL, "https://dl.k8s.io")
	containerd := artifacts.Components(k8sVersion, "amd64")[3]
	containerdURL, _, _ := artifacts.UpstreamURLs(containerd)
	containerdPath := strings.TrimPrefix(containerdURL, "https://github.com")

	tests := []struct {
		name string
		edit func(t *testing.T, files map[string][]byte)
		want []string
		// absent must not exist afterwards: nothing half installed.
		absent []string
	}{
		{name: "wrong checksum",
			edit:   func(t *testing.T, files map[string][]byte) { files[kubeletPath] = []byte("not kubelet") },
			want:   []string{"installing kubelet v1.37.2 (linux/amd64) from http://127.0.0.1:", kubeletPath + ": sha256 mismatch: got "},
			absent: []string{"/usr/local/bin/kubelet", recordPath("kubelet")}},
		{name: "404",
			edit:   func(t *testing.T, files map[string][]byte) { delete(files, kubeletPath) },
			want:   []string{"installing kubelet v1.37.2 (linux/amd64) from http://127.0.0.1:", kubeletPath + ": not found: HTTP 404 Not Found"},
			absent: []string{"/usr/local/bin/kubelet"}},
		{name: "tarball without a file it must have",
			edit: func(t *testing.T, files map[string][]byte) {
				files[containerdPath] = artifactstest.TarGz(t, artifactstest.TarEntry{Name: "bin/containerd", Mode: 0o755, Data: "x"})
				files[containerdPath+".sha256sum"] = fmt.Appendf(nil, "%s  containerd-2.4.2-linux-amd64.tar.gz\n", artifactstest.SHA256(files[containerdPath]))
			},
			want:   []string{"installing containerd v2.4.2 (linux/amd64) from http://127.0.0.1:", "the tarball has no containerd-shim-runc-v2"},
			absent: []string{"/usr/local/bin/containerd", recordPath("containerd")}},
		{name: "not a tarball",
			edit: func(t *testing.T, files map[string][]byte) {
				files[containerdPath] = []byte("html error page")
				files[containerdPath+".sha256sum"] = fmt.Appendf(nil, "%s  containerd-2.4.2-linux-amd64.tar.gz\n", artifactstest.SHA256(files[containerdPath]))
			},
			want:   []string{"installing containerd v2.4.2 (linux/amd64) from http://127.0.0.1:", "reading tarball: gzip: invalid header"},
			absent: []string{"/usr/local/bin/containerd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _, _ := mirrorFixture(t, func(files map[string][]byte) { tt.edit(t, files) })
			err := Binaries(context.Background(), f.opts)
			checkOneLine(t, err, tt.want...)
			for _, p := range tt.absent {
				if f.root.Exists(p) {
					t.Errorf("%s exists after a failed install", p)
				}
			}
			noTemps(t, f.root)
		})
	}
}

func TestBinariesUnreachableMirror(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	l.Close()
	f := newFixture(t, nil)
	f.opts.Source = &artifacts.HTTPMirror{Base: base, Attempts: 2, Backoff: time.Millisecond}
	err = Binaries(context.Background(), f.opts)
	checkOneLine(t, err, "installing kubeadm v1.37.2 (linux/amd64) from "+base+"/release/v1.37.2/bin/linux/amd64/kubeadm", "unreachable", "connection refused")
	if !errors.Is(err, artifacts.ErrUnreachable) {
		t.Errorf("%v is not ErrUnreachable", err)
	}
	noTemps(t, f.root)
}

func TestBinariesFromBundle(t *testing.T) {
	f := newFixture(t, func(c *cluster.Cluster) { c.Spec.Artifacts.Bundle = "/srv/bundle" })
	fakes := artifactstest.Release(t, k8sVersion, "amd64")
	m := artifactstest.WriteBundle(t, f.root.Path("/srv/bundle"), k8sVersion, fakes)
	if err := Binaries(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	for p := range installedFiles {
		if !f.root.Exists(p) {
			t.Errorf("%s not installed", p)
		}
	}
	if !strings.Contains(f.console.String(), "from bundle /srv/bundle") {
		t.Errorf("console %q", f.console.String())
	}

	// A corrupt bundle file on another node: one-line error naming the bundle path.
	g := newFixture(t, func(c *cluster.Cluster) { c.Spec.Artifacts.Bundle = "/srv/bundle" })
	artifactstest.WriteBundle(t, g.root.Path("/srv/bundle"), k8sVersion, fakes)
	os.WriteFile(g.root.Path("/srv/bundle/"+m.Artifacts[6].Path), []byte("truncated"), 0o644)
	err := Binaries(context.Background(), g.opts)
	checkOneLine(t, err, "installing cni-plugins v1.10.0 (linux/amd64) from /srv/bundle/cni-plugins/cni-plugins-linux-amd64-v1.10.0.tgz: sha256 mismatch")
	if g.root.Exists("/opt/cni/bin/bridge") {
		t.Error("CNI plugins installed from a corrupt tarball")
	}
}

// killingSource stands in for an agent killed during a download: after `after` artifacts it
// returns half of the next one and then fails, as a read cut short would.
type killingSource struct {
	artifacts.Source
	after  int
	opened int
}

var errKilled = errors.New("killed")

func (k *killingSource) Open(ctx context.Context, a artifacts.Artifact) (*artifacts.Blob, error) {
	b, err := k.Source.Open(ctx, a)
	if err != nil {
		return nil, err
	}
	k.opened++
	if k.opened <= k.after {
		return b, nil
	}
	data, _ := io.ReadAll(b.Body)
	b.Body.Close()
	b.Body = io.NopCloser(io.MultiReader(strings.NewReader(string(data[:len(data)/2])), errReader{}))
	return b, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errKilled }

// allowEverything lets the whole phase run against the stub, whatever it asks.
func allowEverything(f *fixture, imagesListed string, ctr bool) {
	out, err := dpkgAnswer(RequiredPackages["debian"]...)
	if err != nil {
		panic(err)
	}
	f.stub.Allow(`^dpkg-query -W `, out)
	f.stub.Allow(`^systemctl `, "")
	if ctr {
		f.stub.Allow(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, imagesListed)
	}
	f.stub.Allow(`^/usr/local/bin/kubeadm version -o short$`, "v1.37.2\n")
	f.stub.Allow(`^/usr/local/bin/kubelet --version$`, "Kubernetes v1.37.2\n")
	f.stub.Allow(`^/usr/local/bin/kubectl version --client -o json$`, `{"clientVersion":{"gitVersion":"v1.37.2"}}`)
	f.stub.Allow(`^/usr/local/bin/containerd --version$`, "containerd github.com/containerd/containerd/v2 v2.4.2 abc\n")
	f.stub.Allow(`^/usr/local/sbin/runc --version$`, "runc version 1.5.2\n")
	f.stub.Allow(`^/usr/local/bin/crictl --version$`, "crictl version v1.37.0\n")
	f.stub.Allow(`^/usr/local/bin/crictl --timeout 10s info$`, `{"status":{"conditions":[{"type":"RuntimeReady","status":true},{"type":"NetworkReady","status":false}]}}`)
}

// TestResume is the agent killed in the middle of install and started again: for every point
// between two artifacts, a run that dies mid-download (leaving partial files as a killed
// process would) followed by a full run ends with exactly the files of an uninterrupted run:
// same paths, modes and contents.
func TestResume(t *testing.T) {
	fakes := artifactstest.Release(t, k8sVersion, "amd64")
	image := artifactstest.Extra{Entry: artifacts.Entry{Name: "kubernetes-images", Version: k8sVersion, Arch: "amd64", Kind: artifacts.KindImage,
		Images: []string{"registry.k8s.io/pause:3.10.2"}}, Data: []byte("image archive")}
	newNode := func(t *testing.T) *fixture {
		f := newFixture(t, func(c *cluster.Cluster) {
			c.Spec.Artifacts.Bundle = "/srv/bundle"
			c.Spec.Registry.RegistryMirrors = []string{"https://mirror.example.com"}
		})
		artifactstest.WriteBundle(t, f.root.Path("/srv/bundle"), k8sVersion, fakes, image)
		allowEverything(f, "registry.k8s.io/pause:3.10.2\n", true)
		return f
	}
	ctx := context.Background()

	whole := newNode(t)
	if err := Run(ctx, whole.opts); err != nil {
		t.Fatal(err)
	}
	want := tree(t, whole.root)

	for after := 0; after < len(fakes); after++ {
		t.Run(fmt.Sprintf("killed during artifact %d (%s)", after+1, fakes[after].Name), func(t *testing.T) {
			f := newNode(t)
			bundle, err := artifacts.OpenBundle(f.root.Path("/srv/bundle"), "/srv/bundle")
			if err != nil {
				t.Fatal(err)
			}
			first := f.opts
			first.Source = &killingSource{Source: bundle, after: after}
			if err := Run(ctx, first); !errors.Is(err, errKilled) {
				t.Fatalf("first run: %v, want it killed", err)
			}
			// What a SIGKILL leaves and an in-process failure cleans up: partial temporary
			// files next to the destinations.
			for _, p := range []string{BinDir, CNIBinDir, DownloadDir} {
				if err := os.MkdirAll(f.root.Path(p), 0o755); err != nil {
					t.Fatal(err)
				}
				os.WriteFile(f.root.Path(p+"/"+artifacts.TempPrefix+"partial-123"), []byte("half"), 0o600)
			}
			if err := Run(ctx, f.opts); err != nil {
				t.Fatalf("second run: %v", err)
			}
			if d := diffTrees(want, tree(t, f.root)); len(d) > 0 {
				t.Errorf("resumed run differs from an uninterrupted one:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

// TestRunFromMirror runs the whole phase online: five steps, one console line each, and the CRI
// check.
func TestRunFromMirror(t *testing.T) {
	f, _, _ := mirrorFixture(t, nil)
	allowEverything(f, "", false)
	f.stub.Calls = nil
	if err := Run(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(f.console.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("console has %d lines, want 6:\n%s", len(lines), f.console.String())
	}
	for i, prefix := range []string{"packages:", "binaries:", "runtime:", "images:", "verify:", "verify: containerd answers over CRI"} {
		if !strings.HasPrefix(lines[i], "ksboot: install: "+prefix) {
			t.Errorf("line %d = %q, want it to start with %q", i+1, lines[i], prefix)
		}
	}
	for _, c := range f.stub.Calls {
		if strings.Contains(c, "ctr") {
			t.Errorf("a mirror has no image archives, yet ran %s", c)
		}
	}
}

func TestOptionsChecked(t *testing.T) {
	f := newFixture(t, nil)
	for _, tt := range []struct {
		name string
		edit func(o *Options)
		want string
	}{
		{"no config", func(o *Options) { o.Config = nil }, "no node config"},
		{"no runner", func(o *Options) { o.Exec = nil }, "no command runner"},
		{"bad arch", func(o *Options) { o.Arch = "x86_64" }, `architecture "x86_64" is not supported`},
		{"bundle missing", func(o *Options) { o.Config.Cluster.Spec.Artifacts.Bundle = "/srv/none" }, "opening bundle /srv/none"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := f.opts
			nc := *o.Config
			o.Config = &nc
			tt.edit(&o)
			if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// TestDryRun runs the phase with commands only printed: it completes, and every file lands
// under the dry-run root.
func TestDryRun(t *testing.T) {
	f, _, _ := mirrorFixture(t, nil)
	var printed strings.Builder
	dry := &host.DryRun{Out: &printed}
	f.opts.Exec = dry
	if err := Run(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"apt-get install -y --no-install-recommends", "systemctl restart containerd.service", "/usr/local/bin/kubeadm version -o short"} {
		if !strings.Contains(printed.String(), "would run: "+want) {
			t.Errorf("dry run did not print %q:\n%s", want, printed.String())
		}
	}
	if !f.root.Exists("/usr/local/bin/kubeadm") || !f.root.Exists(runtime.ContainerdConfigPath) {
		t.Error("dry run did not write under its root")
	}
}
