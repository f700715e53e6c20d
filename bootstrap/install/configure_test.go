package install

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/install/runtime"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/cluster"
)

func expectSystemctl(f *fixture) {
	f.stub.Register(`^systemctl daemon-reload$`, "", nil)
	f.stub.Register(`^systemctl enable containerd.service kubelet.service$`, "", nil)
	f.stub.Register(`^systemctl restart containerd.service$`, "", nil)
}

func TestConfigure(t *testing.T) {
	f := newFixture(t, func(c *cluster.Cluster) {
		c.Spec.Registry.RegistryMirrors = []string{"https://mirror.example.com"}
		c.Spec.Registry.InsecureRegistries = []string{"10.0.0.9:5000"}
	})
	// Left from an earlier configuration: one of ksboot's hosts files for a registry no longer
	// listed, and an administrator's own file, which must survive.
	f.root.WriteFile("/etc/containerd/certs.d/old.example.com/hosts.toml", []byte(runtime.ManagedHeader+": old\nserver = \"http://old.example.com\"\n"), 0o644)
	f.root.WriteFile("/etc/containerd/certs.d/mine.example.com/hosts.toml", []byte("server = \"https://mine.example.com\"\n"), 0o644)
	expectSystemctl(f)
	ctx := context.Background()
	if err := Configure(ctx, f.opts); err != nil {
		t.Fatal(err)
	}
	want, err := runtime.Files(runtime.Params{SandboxImage: "registry.k8s.io/pause:3.10.2", Registry: f.opts.Config.Cluster.Spec.Registry})
	if err != nil {
		t.Fatal(err)
	}
	got := tree(t, f.root)
	for _, w := range want {
		st, ok := got[w.Path]
		if !ok {
			t.Errorf("%s not written", w.Path)
			continue
		}
		if st.mode.Perm() != w.Mode || st.sum != sha(w.Data) {
			t.Errorf("%s: mode %v, content differs: %v", w.Path, st.mode.Perm(), st.sum != sha(w.Data))
		}
	}
	if f.root.Exists("/etc/containerd/certs.d/old.example.com") {
		t.Error("a stale ksboot hosts file (and its directory) was kept")
	}
	if !f.root.Exists("/etc/containerd/certs.d/mine.example.com/hosts.toml") {
		t.Error("an administrator's hosts file was removed")
	}
	if !f.root.Exists(kubeadm.ManifestsDir) {
		t.Errorf("%s (the kubelet's static pod directory) not created", kubeadm.ManifestsDir)
	}
	order := strings.Join(f.stub.Calls, "; ")
	if order != "systemctl daemon-reload; systemctl enable containerd.service kubelet.service; systemctl restart containerd.service" {
		t.Errorf("commands: %s", order)
	}
	if !strings.Contains(f.console.String(), "containerd configured (sandbox image registry.k8s.io/pause:3.10.2, 7 files changed, 1 removed)") {
		t.Errorf("console %q", f.console.String())
	}

	// Again: nothing changes on disk, containerd is still restarted (see Configure).
	f.console.Reset()
	expectSystemctl(f)
	if err := Configure(ctx, f.opts); err != nil {
		t.Fatal(err)
	}
	if d := diffTrees(got, tree(t, f.root)); len(d) > 0 {
		t.Errorf("second run changed files: %v", d)
	}
	if !strings.Contains(f.console.String(), "0 files changed, 0 removed") {
		t.Errorf("console %q", f.console.String())
	}
}

func TestConfigureSandboxImage(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *cluster.Cluster)
		want string
	}{
		{"upstream", nil, `sandbox = "registry.k8s.io/pause:3.10.2"`},
		{"older kubernetes", func(c *cluster.Cluster) { c.Spec.Kubernetes.Version = "v1.33.4" }, `sandbox = "registry.k8s.io/pause:3.10"`},
		{"kubernetes.imageRepository", func(c *cluster.Cluster) {
			c.Spec.Kubernetes.ImageRepository = "registry.aliyuncs.com/google_containers"
		},
			`sandbox = "registry.aliyuncs.com/google_containers/pause:3.10.2"`},
		{"KubeKey private registry with namespace", func(c *cluster.Cluster) {
			c.Spec.Registry.PrivateRegistry = "dockerhub.kubekey.local"
			c.Spec.Registry.NamespaceOverride = "kubesphereio"
		}, `sandbox = "dockerhub.kubekey.local/kubesphereio/pause:3.10.2"`},
		{"private registry as a mirror", func(c *cluster.Cluster) { c.Spec.Registry.PrivateRegistry = "https://reg.example.com/" },
			`sandbox = "reg.example.com/pause:3.10.2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.edit)
			expectSystemctl(f)
			if err := Configure(context.Background(), f.opts); err != nil {
				t.Fatal(err)
			}
			cfg, err := f.root.ReadFile(runtime.ContainerdConfigPath)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(cfg), tt.want) {
				t.Errorf("config.toml lacks %s:\n%s", tt.want, cfg)
			}
		})
	}
}

func TestConfigureRestartFails(t *testing.T) {
	f := newFixture(t, nil)
	f.stub.Register(`^systemctl daemon-reload$`, "", nil)
	f.stub.Register(`^systemctl enable`, "", nil)
	f.stub.Register(`^systemctl restart containerd.service$`, "Job for containerd.service failed.", errors.New("exit status 1"))
	err := Configure(context.Background(), f.opts)
	if err == nil || !strings.Contains(err.Error(), `configuring the container runtime: command "systemctl restart containerd.service" failed`) {
		t.Fatalf("got %v", err)
	}
}
