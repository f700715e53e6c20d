package cloudinit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/internal/golden"
)

const agentSum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// testSecrets loads the fixed, test-only cluster secrets under testdata/secrets so that golden
// files are stable. They are created there by the first -update run.
func testSecrets(t *testing.T) *cluster.Secrets {
	t.Helper()
	src := filepath.Join("testdata", "secrets")
	if _, err := os.Stat(src); os.IsNotExist(err) && golden.Updating() {
		if _, _, err := cluster.LoadOrCreateSecrets(src); err != nil {
			t.Fatal(err)
		}
	}
	// git does not keep directory modes; ReadSecrets insists on a private directory.
	dst := filepath.Join(t.TempDir(), "secrets")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := cluster.ReadSecrets(dst)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type renderCase struct {
	name  string
	file  string // cluster file under ../cluster/testdata
	host  string // "" = generic worker
	agent Agent
}

var renderCases = []renderCase{
	{"sample-node1", "", "node1", Agent{SHA256: agentSum}},
	{"sample-node2", "", "node2", Agent{SHA256: agentSum}},
	{"generic-worker", "", "", Agent{SHA256: agentSum}},
	{"three-nodes-cp1-url", "../cluster/testdata/valid/three-nodes.yaml", "cp1", Agent{SHA256: agentSum, URL: "http://10.10.0.1:8080/ksboot"}},
	{"three-nodes-w2-dhcp", "../cluster/testdata/valid/three-nodes.yaml", "w2", Agent{SHA256: agentSum}},
	{"ha-master2", "../cluster/testdata/valid/ha-static.yaml", "master2", Agent{SHA256: agentSum}},
}

func render(t *testing.T, s *cluster.Secrets, tc renderCase) *Seed {
	t.Helper()
	c := cluster.Sample(cluster.SampleOptions{})
	if tc.file != "" {
		var err error
		if c, _, err = cluster.Load(tc.file); err != nil {
			t.Fatal(err)
		}
	}
	var nc *cluster.NodeConfig
	var err error
	if tc.host == "" {
		nc, err = cluster.GenericWorkerConfig(c, s)
	} else {
		nc, err = cluster.NodeConfigFor(c, s, tc.host)
	}
	if err != nil {
		t.Fatal(err)
	}
	seed, err := Render(nc, tc.agent)
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

func TestRenderGolden(t *testing.T) {
	s := testSecrets(t)
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			seed := render(t, s, tc)
			golden.Assert(t, tc.name+".user-data", seed.UserData)
			golden.Assert(t, tc.name+".meta-data", seed.MetaData)
			golden.Assert(t, tc.name+".network-config", seed.NetworkConfig)
		})
	}
}

func TestUserDataContent(t *testing.T) {
	s := testSecrets(t)
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			seed := render(t, s, tc)
			if !bytes.HasPrefix(seed.UserData, []byte("#cloud-config\n")) {
				t.Fatal("user-data does not start with #cloud-config")
			}
			var cc CloudConfig
			if err := yaml.Unmarshal(seed.UserData, &cc); err != nil {
				t.Fatal(err)
			}
			var node *WriteFile
			for i := range cc.WriteFiles {
				if cc.WriteFiles[i].Path == "/etc/ksboot/node.yaml" {
					node = &cc.WriteFiles[i]
				}
			}
			if node == nil || node.Permissions != "0600" {
				t.Fatalf("node.yaml missing or not 0600: %+v", node)
			}
			nc, err := cluster.ParseNodeConfig("node.yaml", []byte(node.Content))
			if err != nil {
				t.Fatalf("node.yaml in user-data does not parse: %v", err)
			}
			hasKey := strings.Contains(string(seed.UserData), "PRIVATE KEY")
			if nc.Node.IsControlPlane() != hasKey {
				t.Errorf("control plane=%v but private key present=%v", nc.Node.IsControlPlane(), hasKey)
			}
			if !strings.Contains(string(seed.UserData), agentSum) {
				t.Error("agent checksum missing from the install script")
			}
		})
	}
}

func TestRenderRejectsBadChecksum(t *testing.T) {
	s := testSecrets(t)
	nc, err := cluster.NodeConfigFor(cluster.Sample(cluster.SampleOptions{}), s, "node1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Render(nc, Agent{SHA256: "abc"}); err == nil {
		t.Error("want an error for a malformed checksum")
	}
}

// TestCloudInitJudges feeds every rendered file to Debian's cloud-init: `cloud-init schema` for
// user-data and `cloud-init devel net-convert` (networkd and eni) for network-config.
func TestCloudInitJudges(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the real cloud-init checks")
	}
	ci, err := exec.LookPath("cloud-init")
	if err != nil {
		t.Skip("cloud-init is not installed (apt-get install cloud-init; hack/install-deps.sh does it)")
	}
	s := testSecrets(t)
	dir := t.TempDir()
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			seed := render(t, s, tc)
			ud := filepath.Join(dir, tc.name+".user-data")
			if err := os.WriteFile(ud, seed.UserData, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(ci, "schema", "--config-file", ud).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Valid") {
				t.Errorf("cloud-init schema rejects user-data: %v\n%s", err, out)
			}
			if seed.NetworkConfig == nil {
				return
			}
			nc := filepath.Join(dir, tc.name+".network-config")
			if err := os.WriteFile(nc, seed.NetworkConfig, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, renderer := range []string{"networkd", "eni"} {
				outDir := filepath.Join(dir, tc.name+"-"+renderer)
				out, err := exec.Command(ci, "devel", "net-convert", "-p", nc, "-k", "yaml", "-d", outDir, "-D", "debian", "-O", renderer).CombinedOutput()
				if err != nil {
					t.Errorf("net-convert -O %s: %v\n%s", renderer, err, out)
					continue
				}
				var rendered strings.Builder
				_ = filepath.Walk(outDir, func(p string, info os.FileInfo, err error) error {
					if err == nil && !info.IsDir() {
						b, _ := os.ReadFile(p)
						rendered.Write(b)
					}
					return nil
				})
				host := mustHostAddress(t, tc)
				if !strings.Contains(rendered.String(), strings.Split(host, "/")[0]) {
					t.Errorf("net-convert -O %s output lacks the address %s:\n%s", renderer, host, rendered.String())
				}
			}
		})
	}
}

func mustHostAddress(t *testing.T, tc renderCase) string {
	c := cluster.Sample(cluster.SampleOptions{})
	if tc.file != "" {
		var err error
		if c, _, err = cluster.Load(tc.file); err != nil {
			t.Fatal(err)
		}
	}
	h, _ := c.Host(tc.host)
	return h.Address
}
