package kubesphere

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/internal/golden"
)

// testCluster is the built-in sample with KubeSphere of the given version and a change
// applied, defaulted again.
func testCluster(t *testing.T, version string, change func(*cluster.Cluster)) *cluster.Cluster {
	t.Helper()
	c := cluster.Sample(cluster.SampleOptions{KubeSphereVersion: version})
	if change != nil {
		change(c)
	}
	cluster.SetDefaults(c)
	return c
}

func TestGoldenInstaller(t *testing.T) {
	for _, tc := range []struct {
		name, version string
		change        func(*cluster.Cluster)
		file          string
		ccOnly        bool
	}{
		{"ks-installer v3.4.1", "v3.4.1", nil, "ks-installer.golden.yaml", false},
		// Upstream's default object of each minor, with ksboot's settings for the sample.
		{"cluster configuration v3.3", "v3.3.2", nil, "clusterconfiguration-v3.3.golden.yaml", true},
		{"cluster configuration v3.4", "v3.4.1", nil, "clusterconfiguration-v3.4.golden.yaml", true},
		{"cluster configuration: private registry, HA, passthrough", "v3.4.1", func(c *cluster.Cluster) {
			c.Spec.Hosts = append(c.Spec.Hosts,
				cluster.Host{Name: "node4", Address: "192.168.0.14/24"}, cluster.Host{Name: "node5", Address: "192.168.0.15/24"})
			c.Spec.RoleGroups.ControlPlane = []string{"node1", "node4", "node5"}
			c.Spec.Registry.PrivateRegistry = "dockerhub.kubekey.local"
			c.Spec.Registry.NamespaceOverride = "kubesphereio"
			c.Spec.Storage.DefaultClass = "ceph-rbd"
			c.Spec.KubeSphere.Configuration = map[string]any{
				"devops":  map[string]any{"enabled": true, "jenkinsMemoryLim": "4Gi"},
				"common":  map[string]any{"core": map[string]any{"console": map[string]any{"port": 30881}}},
				"logging": map[string]any{"enabled": true},
			}
		}, "clusterconfiguration-private.golden.yaml", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParamsFromCluster(testCluster(t, tc.version, tc.change), "")
			if err != nil {
				t.Fatal(err)
			}
			cc, err := ClusterConfiguration(p)
			if err != nil {
				t.Fatal(err)
			}
			objs := []*unstructured.Unstructured{cc}
			if !tc.ccOnly {
				if objs, err = InstallerObjects(p); err != nil {
					t.Fatal(err)
				}
			}
			data, err := kube.MarshalYAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, tc.file, data)
		})
	}
}

func TestParamsFromCluster(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version string
		change  func(*cluster.Cluster)
		console string
		check   func(t *testing.T, p Params)
		wantErr string
	}{
		{name: "v3 defaults", version: "v3.4.1", check: func(t *testing.T, p Params) {
			want := Params{Version: "v3.4.1", Major: 3, ImageRegistry: "docker.io", InstallerImage: "docker.io/kubesphere/ks-installer:v3.4.1",
				StorageClass: "openebs-hostpath", EtcdEndpoints: []string{"192.168.0.11"}, ConsoleAddress: "192.168.0.11",
				ConsolePort: 30880, AdminPassword: "P@88w0rd"}
			if p.Version != want.Version || p.ImageRegistry != want.ImageRegistry || p.InstallerImage != want.InstallerImage ||
				p.StorageClass != want.StorageClass || strings.Join(p.EtcdEndpoints, ",") != "192.168.0.11" ||
				p.ConsoleAddress != want.ConsoleAddress || p.ConsolePort != want.ConsolePort || p.AdminPassword != want.AdminPassword || p.Chart != "" {
				t.Errorf("params = %+v", p)
			}
		}},
		{name: "v4 default chart", version: "v4.1.3", check: func(t *testing.T, p Params) {
			if p.Chart != "https://charts.kubesphere.io/main/ks-core-1.1.4.tgz" || p.InstallerImage != "" {
				t.Errorf("chart %q installer %q", p.Chart, p.InstallerImage)
			}
		}},
		{name: "v4 zone cn", version: "v4.1.3", change: func(c *cluster.Cluster) { c.Spec.Zone = "cn" }, check: func(t *testing.T, p Params) {
			if p.ImageRegistry != DefaultImageRegistryCN || !strings.HasPrefix(p.Chart, DefaultChartBaseURLCN) {
				t.Errorf("registry %q chart %q", p.ImageRegistry, p.Chart)
			}
		}},
		{name: "v3 zone cn", version: "v3.4.1", change: func(c *cluster.Cluster) { c.Spec.Zone = "cn" }, check: func(t *testing.T, p Params) {
			if p.InstallerImage != "registry.cn-beijing.aliyuncs.com/kubesphereio/ks-installer:v3.4.1" {
				t.Errorf("installer %q", p.InstallerImage)
			}
		}},
		{name: "kubesphere registry wins", version: "v3.4.1", change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.ImageRegistry = "https://mirror.example.com:5000/ks/"
			c.Spec.Registry.PrivateRegistry = "reg.local"
		}, check: func(t *testing.T, p Params) {
			if p.ImageRegistry != "mirror.example.com:5000/ks" || p.InstallerImage != "mirror.example.com:5000/ks/kubesphere/ks-installer:v3.4.1" {
				t.Errorf("registry %q installer %q", p.ImageRegistry, p.InstallerImage)
			}
		}},
		{name: "installer image set", version: "v3.4.1", change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.InstallerImage = "reg.local/ks/ks-installer:v3.4.1-patched"
		}, check: func(t *testing.T, p Params) {
			if p.InstallerImage != "reg.local/ks/ks-installer:v3.4.1-patched" {
				t.Errorf("installer %q", p.InstallerImage)
			}
		}},
		{name: "dhcp init node", version: "v3.4.1", console: "10.0.0.7", change: func(c *cluster.Cluster) {
			c.Spec.Hosts[0].Address = ""
		}, check: func(t *testing.T, p Params) {
			if p.ConsoleAddress != "10.0.0.7" || strings.Join(p.EtcdEndpoints, ",") != "10.0.0.7" {
				t.Errorf("console %q etcd %v", p.ConsoleAddress, p.EtcdEndpoints)
			}
		}},
		{name: "port and password from configuration", version: "v4.1.3", change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.Configuration = map[string]any{
				"console":        map[string]any{"nodePort": 31000},
				"authentication": map[string]any{"adminPassword": "Secr3t!"},
			}
		}, check: func(t *testing.T, p Params) {
			if p.ConsolePort != 31000 || p.AdminPassword != "Secr3t!" {
				t.Errorf("port %d password %q", p.ConsolePort, p.AdminPassword)
			}
		}},
		{name: "v3 empty password is generated by ks-installer", version: "v3.4.1", change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.Configuration = map[string]any{"authentication": map[string]any{"adminPassword": ""}}
		}, check: func(t *testing.T, p Params) {
			if !p.PasswordGenerated || p.AdminPassword != DefaultAdminPassword {
				t.Errorf("generated %v password %q", p.PasswordGenerated, p.AdminPassword)
			}
		}},
		{name: "v3.3.0 ignores adminPassword", version: "v3.3.0", change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.Configuration = map[string]any{"authentication": map[string]any{"adminPassword": "Secr3tPw"}}
		}, check: func(t *testing.T, p Params) {
			if p.PasswordGenerated || p.AdminPassword != DefaultAdminPassword {
				t.Errorf("generated %v password %q", p.PasswordGenerated, p.AdminPassword)
			}
		}},
		{name: "v4 empty password is the default", version: "v4.1.3", change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.Configuration = map[string]any{"authentication": map[string]any{"adminPassword": ""}}
		}, check: func(t *testing.T, p Params) {
			if p.PasswordGenerated || p.AdminPassword != DefaultAdminPassword {
				t.Errorf("generated %v password %q", p.PasswordGenerated, p.AdminPassword)
			}
		}},
		{name: "password not a string", version: "v3.4.1", change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.Configuration = map[string]any{"authentication": map[string]any{"adminPassword": 123456}}
		}, wantErr: "authentication.adminPassword: must be a string"},
		{name: "unknown v4 release needs a chart", version: "v4.9.9", wantErr: "spec.kubesphere.chart"},
		{name: "bad image registry", version: "v3.4.1", change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.ImageRegistry = "http:// spaces /"
		}, wantErr: "spec.kubesphere.imageRegistry"},
		{name: "bad port", version: "v3.4.1", change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.Configuration = map[string]any{"common": map[string]any{"core": map[string]any{"console": map[string]any{"port": "x"}}}}
		}, wantErr: "common.core.console.port"},
		{name: "v2 refused", version: "v2.1.0", wantErr: "v3.x or v4.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParamsFromCluster(testCluster(t, tc.version, tc.change), tc.console)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}

func TestBanner(t *testing.T) {
	p, err := ParamsFromCluster(testCluster(t, "v3.4.1", nil), "")
	if err != nil {
		t.Fatal(err)
	}
	b := NewBanner(p)
	for _, want := range []string{
		"Welcome to KubeSphere!", "Console: http://192.168.0.11:30880", "Account: admin", "Password: P@88w0rd",
		"Please change the default password after login.",
	} {
		if !strings.Contains(b.String(), want) || !strings.Contains(b.Issue(), want) {
			t.Errorf("banner lacks %q:\n%s", want, b)
		}
	}
	root := t.TempDir()
	path, err := WriteIssue(root, b)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(root, "etc/issue.d/ksboot-kubesphere.issue") {
		t.Errorf("path = %s", path)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("issue file: %v, mode %v", err, st.Mode())
	}

	p.AdminPassword = `s3cr\et`
	b = NewBanner(p)
	if !strings.Contains(b.String(), `Password: s3cr\et`) {
		t.Errorf("String() must show the configured password:\n%s", b)
	}
	if strings.Contains(b.Issue(), "s3cr") {
		t.Errorf("Issue() shows a password the operator chose on the login screen:\n%s", b.Issue())
	}
}

// packChart packs testdata/ks-core into an archive and returns its bytes.
func packChart(t *testing.T) []byte {
	t.Helper()
	ch, err := loader.Load("testdata/ks-core")
	if err != nil {
		t.Fatal(err)
	}
	path, err := chartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// chartServer serves the packed test chart at /main/ks-core-1.1.4.tgz and 404 elsewhere.
func chartServer(t *testing.T) *httptest.Server {
	t.Helper()
	data := packChart(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/main/ks-core-1.1.4.tgz" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLoadChart(t *testing.T) {
	srv := chartServer(t)
	ctx := context.Background()
	bundle := t.TempDir()
	os.MkdirAll(filepath.Join(bundle, "charts"), 0o755)
	os.WriteFile(filepath.Join(bundle, "charts", "ks-core-1.1.4.tgz"), packChart(t), 0o644)

	for _, tc := range []struct {
		name, source, bundle string
		wantErr              []string
	}{
		{name: "url", source: srv.URL + "/main/ks-core-1.1.4.tgz"},
		{name: "bundle path", source: "charts/ks-core-1.1.4.tgz", bundle: bundle},
		{name: "directory", source: mustAbs(t, "testdata/ks-core")},
		{name: "404", source: srv.URL + "/main/ks-core-9.9.9.tgz",
			wantErr: []string{srv.URL + "/main/ks-core-9.9.9.tgz", "404 Not Found", "spec.kubesphere.chart", "suspended"}},
		{name: "no bundle", source: "charts/ks-core-1.1.4.tgz", wantErr: []string{"no bundle is mounted"}},
		{name: "missing in bundle", source: "charts/ks-core-0.0.1.tgz", bundle: bundle, wantErr: []string{"ks-core-0.0.1.tgz"}},
		{name: "oci", source: "oci://registry.example.com/ks/ks-core", wantErr: []string{"unsupported scheme"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := LoadChart(ctx, tc.source, tc.bundle, srv.Client())
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if ch.Name() != "ks-core" {
					t.Errorf("chart %s", ch.Name())
				}
				return
			}
			var ce *ChartError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ChartError", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRender(t *testing.T) {
	srv := chartServer(t)
	t.Run("v3", func(t *testing.T) {
		dir := t.TempDir()
		path, err := Render(context.Background(), dir, Options{Cluster: testCluster(t, "v3.4.1", nil)})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(path)
		want, _ := os.ReadFile("testdata/ks-installer.golden.yaml")
		if filepath.Base(path) != File || !bytes.Equal(data, want) {
			t.Errorf("%s does not match testdata/ks-installer.golden.yaml", path)
		}
	})
	t.Run("v4", func(t *testing.T) {
		c := testCluster(t, "v4.1.3", func(c *cluster.Cluster) {
			c.Spec.KubeSphere.Chart = srv.URL + "/main/ks-core-1.1.4.tgz"
			c.Spec.KubeSphere.ImageRegistry = "mirror.example.com/ks"
		})
		path, err := Render(context.Background(), t.TempDir(), Options{Cluster: c, HTTPClient: srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(path)
		if !bytes.Contains(data, []byte("image: mirror.example.com/ks/kubesphere/ks-apiserver:v4.1.3")) {
			t.Errorf("rendered chart lacks the registry override:\n%s", data)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		if _, err := Render(context.Background(), t.TempDir(), Options{Cluster: testCluster(t, "", nil)}); !errors.Is(err, ErrDisabled) {
			t.Fatalf("err = %v, want ErrDisabled", err)
		}
	})
}

func TestInstallerDone(t *testing.T) {
	cc := func(status map[string]any) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		if status != nil {
			u.Object["status"] = status
		}
		return u
	}
	for _, tc := range []struct {
		name   string
		status map[string]any
		done   bool
		state  string
	}{
		{"no status", nil, false, "not set yet"},
		{"enabled", map[string]any{"core": map[string]any{"status": "enabled", "version": "v3.4.1"}}, true, "status.core.status=enabled version=v3.4.1"},
		{"old version", map[string]any{"core": map[string]any{"status": "enabled", "version": "v3.3.2"}}, false, "version=v3.3.2"},
		{"failed component", map[string]any{
			"core":       map[string]any{"status": "enabled", "version": "v3.4.1"},
			"monitoring": map[string]any{"status": "failed"},
		}, true, "failed: monitoring"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done, state := InstallerDone(cc(tc.status), "v3.4.1")
			if done != tc.done || !strings.Contains(state, tc.state) {
				t.Errorf("InstallerDone = %v, %q; want %v, containing %q", done, state, tc.done, tc.state)
			}
		})
	}
}

// TestClusterConfigurationKeepsUpstreamBlocks checks the keys ks-installer reads without a
// default of its own (installRunner.py and its playbooks index them directly), also after the
// user's configuration is merged over the defaults.
func TestClusterConfigurationKeepsUpstreamBlocks(t *testing.T) {
	common := [][]string{
		{"common", "es", "logMaxAge"}, {"common", "es", "basicAuth", "enabled"}, {"common", "redis", "enabled"},
		{"common", "openldap", "enabled"}, {"common", "minio", "volumeSize"}, {"common", "gpu", "kinds"},
		{"common", "monitoring", "GPUMonitoring", "enabled"}, {"alerting", "enabled"}, {"auditing", "enabled"},
		{"devops", "jenkinsVolumeSize"}, {"events", "enabled"}, {"logging", "logsidecar", "replicas"},
		{"metrics_server", "enabled"}, {"monitoring", "gpu", "nvidia_dcgm_exporter", "enabled"},
		{"multicluster", "clusterRole"}, {"network", "ippool", "type"}, {"openpitrix", "store", "enabled"},
		{"servicemesh", "istio", "components", "cni", "enabled"}, {"edgeruntime", "kubeedge", "iptables-manager", "mode"},
		{"gatekeeper", "enabled"}, {"terminal", "timeout"}, {"etcd", "endpointIps"},
	}
	for _, tc := range []struct {
		version string
		extra   [][]string
		absent  [][]string
	}{
		{"v3.3.2", nil, [][]string{{"common", "opensearch"}, {"common", "es", "enabled"}, {"events", "ruler"}}},
		{"v3.4.1", [][]string{{"common", "es", "enabled"}, {"common", "opensearch", "enabled"}, {"events", "ruler", "replicas"}, {"devops", "jenkinsCpuReq"}}, nil},
	} {
		t.Run(tc.version, func(t *testing.T) {
			p, err := ParamsFromCluster(testCluster(t, tc.version, func(c *cluster.Cluster) {
				c.Spec.KubeSphere.Configuration = map[string]any{
					"common":  map[string]any{"es": map[string]any{"logMaxAge": 3}},
					"logging": map[string]any{"enabled": true},
				}
			}), "")
			if err != nil {
				t.Fatal(err)
			}
			cc, err := ClusterConfiguration(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, path := range append(common, tc.extra...) {
				if _, ok, _ := unstructured.NestedFieldNoCopy(cc.Object, append([]string{"spec"}, path...)...); !ok {
					t.Errorf("spec.%s is missing", strings.Join(path, "."))
				}
			}
			for _, path := range tc.absent {
				if _, ok, _ := unstructured.NestedFieldNoCopy(cc.Object, append([]string{"spec"}, path...)...); ok {
					t.Errorf("spec.%s is not in upstream's %s layout", strings.Join(path, "."), CCLayout(tc.version))
				}
			}
			if v, _, _ := unstructured.NestedInt64(cc.Object, "spec", "common", "es", "logMaxAge"); v != 3 {
				t.Errorf("the user's common.es.logMaxAge was not merged: %d", v)
			}
			if v, _, _ := unstructured.NestedBool(cc.Object, "spec", "logging", "enabled"); !v {
				t.Error("the user's logging.enabled was not merged")
			}
		})
	}
}
