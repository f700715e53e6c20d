package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/artifactstest"
	"github.com/ksboot/ksboot/cluster"
)

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func imageArchive(name, arch string, images ...string) artifactstest.Extra {
	return artifactstest.Extra{Entry: artifacts.Entry{Name: name, Version: k8sVersion, Arch: arch, Kind: artifacts.KindImage,
		Path: "images/" + name + "-" + arch + ".tar", Images: images}, Data: []byte("archive " + name + " " + arch)}
}

func TestImportImages(t *testing.T) {
	control := imageArchive("kubernetes", "amd64", "registry.k8s.io/kube-apiserver:v1.37.2", "registry.k8s.io/pause:3.10.2")
	flannel := imageArchive("flannel", "amd64", "ghcr.io/flannel-io/flannel:v0.27.4")
	other := imageArchive("kubernetes", "arm64", "registry.k8s.io/pause:3.10.2")
	tests := []struct {
		name    string
		setup   func(f *fixture)
		console string
		wantErr []string
	}{
		{name: "imports what is missing",
			setup: func(f *fixture) {
				f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, "ghcr.io/flannel-io/flannel:v0.27.4\n", nil)
				f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images import \S+/srv/bundle/images/kubernetes-amd64.tar$`, "unpacking …done", nil)
				f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`,
					"ghcr.io/flannel-io/flannel:v0.27.4\nregistry.k8s.io/kube-apiserver:v1.37.2\nregistry.k8s.io/pause:3.10.2\n", nil)
			},
			console: "images: imported kubernetes"},
		{name: "everything present",
			setup: func(f *fixture) {
				f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`,
					"ghcr.io/flannel-io/flannel:v0.27.4\nregistry.k8s.io/kube-apiserver:v1.37.2\nregistry.k8s.io/pause:3.10.2\n", nil)
			},
			console: "images: kubernetes, flannel already imported"},
		{name: "archive without the promised image",
			setup: func(f *fixture) {
				f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, "ghcr.io/flannel-io/flannel:v0.27.4\n", nil)
				f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images import `, "", nil)
				f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, "ghcr.io/flannel-io/flannel:v0.27.4\nregistry.k8s.io/pause:3.10.2\n", nil)
			},
			wantErr: []string{"installing image kubernetes v1.37.2 (amd64) from /srv/bundle/images/kubernetes-amd64.tar: not found: the archive did not provide registry.k8s.io/kube-apiserver:v1.37.2"}},
		{name: "corrupt archive is not imported",
			setup: func(f *fixture) {
				os.WriteFile(f.root.Path("/srv/bundle/images/kubernetes-amd64.tar"), []byte("truncated"), 0o644)
				f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, "", nil)
			},
			wantErr: []string{"installing image kubernetes v1.37.2 (amd64) from /srv/bundle/images/kubernetes-amd64.tar: sha256 mismatch"}},
		{name: "containerd not running",
			setup: func(f *fixture) {
				f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, "ctr: failed to dial \"/run/containerd/containerd.sock\"", errExit1)
			},
			wantErr: []string{"listing containerd images: command \"/usr/local/bin/ctr -n k8s.io images ls -q\" failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *cluster.Cluster) { c.Spec.Artifacts.Bundle = "/srv/bundle" })
			artifactstest.WriteBundle(t, f.root.Path("/srv/bundle"), k8sVersion, nil, control, flannel, other)
			tt.setup(f)
			err := ImportImages(context.Background(), f.opts)
			if tt.wantErr != nil {
				checkOneLine(t, err, tt.wantErr...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(f.console.String(), tt.console) {
				t.Errorf("console %q does not say %q", f.console.String(), tt.console)
			}
		})
	}
}

func TestImportImagesFromMirror(t *testing.T) {
	f := newFixture(t, nil) // no command may run
	if err := ImportImages(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.console.String(), "images: none in upstream release downloads") {
		t.Errorf("console %q", f.console.String())
	}
}

// A worker imports what every node runs and skips archives of control-plane images only.
func TestImportImagesOnWorkerSkipsControlPlane(t *testing.T) {
	cp := imageArchive("kubernetes-control-plane", "amd64", "registry.k8s.io/kube-apiserver:v1.37.2", "registry.k8s.io/etcd:3.7.0-0",
		"reg.example.com:5000/kubesphere/kube-scheduler:v1.37.2")
	node := imageArchive("kubernetes", "amd64", "registry.k8s.io/kube-proxy:v1.37.2", "registry.k8s.io/pause:3.10.2")
	f := newFixture(t, func(c *cluster.Cluster) { c.Spec.Artifacts.Bundle = "/srv/bundle" })
	f.opts.Config.Node = cluster.NodeInfo{Name: "node2", Roles: []string{cluster.RoleWorker}}
	artifactstest.WriteBundle(t, f.root.Path("/srv/bundle"), k8sVersion, nil, cp, node)
	f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, "", nil)
	f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images import \S+/srv/bundle/images/kubernetes-amd64.tar$`, "", nil)
	f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, "registry.k8s.io/kube-proxy:v1.37.2\nregistry.k8s.io/pause:3.10.2\n", nil)
	if err := ImportImages(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"images: skipped kubernetes-control-plane (control-plane images; this node is a worker)", "images: imported kubernetes"} {
		if !strings.Contains(f.console.String(), want) {
			t.Errorf("console %q does not say %q", f.console.String(), want)
		}
	}
}

func TestRunsOnEveryNode(t *testing.T) {
	for ref, want := range map[string]bool{
		"registry.k8s.io/kube-apiserver:v1.37.2":                                                       false,
		"registry.k8s.io/etcd:3.7.0-0":                                                                 false,
		"reg.local:5000/kubesphere/kube-scheduler:v1.37":                                               false,
		"registry.k8s.io/etcd@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": false,
		"registry.k8s.io/kube-proxy:v1.37.2":                                                           true,
		"registry.k8s.io/coredns/coredns:v1.14.6":                                                      true,
		"reg.local:5000/pause:3.10.2":                                                                  true,
		"ghcr.io/kube-vip/kube-vip:v0.7.2":                                                             false, // internalLoadbalancer kube-vip: control planes only
		"reg.local:5000/kubesphereio/kube-vip:v0.7.2":                                                  false,
		"docker.io/library/haproxy:2.9.6-alpine":                                                       true, // internalLoadbalancer haproxy: the other nodes
	} {
		if got := RunsOnEveryNode(ref); got != want {
			t.Errorf("RunsOnEveryNode(%q) = %v, want %v", ref, got, want)
		}
	}
}

// A bundle made for a rolling upgrade holds the Kubernetes images of two releases: a node
// imports only those of the release it installs, and archives of no release (Flannel) always.
func TestImportImagesOfOneRelease(t *testing.T) {
	archive := func(name, version string, images ...string) artifactstest.Extra {
		return artifactstest.Extra{Entry: artifacts.Entry{Name: name, Version: version, Arch: "amd64", Kind: artifacts.KindImage,
			Path: "images/" + version + "/" + name + "-amd64.tar", Images: images}, Data: []byte("archive " + name + " " + version)}
	}
	this := archive("kubernetes", k8sVersion, "registry.k8s.io/kube-proxy:"+k8sVersion, "registry.k8s.io/pause:3.10.2")
	next := archive("kubernetes", "v1.38.0", "registry.k8s.io/kube-proxy:v1.38.0", "registry.k8s.io/pause:3.10.2")
	flannel := archive("flannel", "v0.27.4", "ghcr.io/flannel-io/flannel:v0.27.4")
	f := newFixture(t, func(c *cluster.Cluster) { c.Spec.Artifacts.Bundle = "/srv/bundle" })
	artifactstest.WriteBundle(t, f.root.Path("/srv/bundle"), k8sVersion, nil, this, next, flannel)
	f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, "", nil)
	f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images import \S+/srv/bundle/images/`+k8sVersion+`/kubernetes-amd64.tar$`, "", nil)
	f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, "registry.k8s.io/kube-proxy:"+k8sVersion+"\nregistry.k8s.io/pause:3.10.2\n", nil)
	f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images import \S+/srv/bundle/images/v0.27.4/flannel-amd64.tar$`, "", nil)
	f.stub.Register(`^/usr/local/bin/ctr -n k8s.io images ls -q$`, "registry.k8s.io/kube-proxy:"+k8sVersion+"\nregistry.k8s.io/pause:3.10.2\nghcr.io/flannel-io/flannel:v0.27.4\n", nil)
	if err := ImportImages(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"images: skipped kubernetes v1.38.0 (another Kubernetes release than " + k8sVersion + ")", "images: imported kubernetes, flannel"} {
		if !strings.Contains(f.console.String(), want) {
			t.Errorf("console %q does not say %q", f.console.String(), want)
		}
	}
}

func TestForOtherRelease(t *testing.T) {
	for _, tc := range []struct {
		refs []string
		want bool
	}{
		{[]string{"registry.k8s.io/kube-apiserver:v1.27.16", "registry.k8s.io/etcd:3.5.12-0"}, true},
		{[]string{"registry.k8s.io/kube-apiserver:v1.26.5", "registry.k8s.io/etcd:3.5.6-0"}, false},
		{[]string{"reg.local:5000/kubesphere/kube-proxy:v1.27.16", "reg.local:5000/kubesphere/kube-proxy:v1.26.5"}, false},
		{[]string{"registry.k8s.io/pause:3.9", "registry.k8s.io/coredns/coredns:v1.10.1"}, false}, // no release image: any release's
		{[]string{"ghcr.io/flannel-io/flannel:v0.27.4"}, false},
		{[]string{"registry.k8s.io/kube-proxy@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, false},
	} {
		if got := ForOtherRelease(tc.refs, "v1.26.5"); got != tc.want {
			t.Errorf("ForOtherRelease(%q, v1.26.5) = %v, want %v", tc.refs, got, tc.want)
		}
	}
}
