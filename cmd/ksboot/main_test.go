package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
	"gopkg.in/yaml.v3"

	"github.com/ksboot/ksboot/cloudinit"
	"github.com/ksboot/ksboot/cluster"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers: the CLI's logger (slog.Default) is
// also written by background goroutines, such as a test server's error log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ksboot runs the CLI in-process and returns exit code, stdout and stderr.
func ksboot(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut syncBuffer
	code := run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// fakeAgent writes a small stand-in for the ksboot binary so that seeds stay small in tests.
func fakeAgent(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "ksboot-agent")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho fake agent\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCreateConfigThenValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "kubesphere-v3.4.0.yaml")
	code, out, errOut := ksboot(t, "create", "config", "--with-kubernetes", "v1.26.5", "--with-kubesphere", "v3.4.0", "-f", file)
	if code != 0 {
		t.Fatalf("create config: exit %d\n%s%s", code, out, errOut)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"apiVersion: ksboot.dev/v1alpha1", "version: v1.26.5", "version: v3.4.0", "# Every machine"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("written file lacks %q", want)
		}
	}
	if code, _, _ := ksboot(t, "create", "config", "-f", file); code == 0 {
		t.Error("create config overwrote an existing file without --force")
	}
	code, out, errOut = ksboot(t, "validate", "-f", file)
	if code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("validate: exit %d\n%s%s", code, out, errOut)
	}
}

func TestCreateConfigDefaultName(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.Chdir(wd) }()
	if code, _, errOut := ksboot(t, "create", "config"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "config-sample.yaml")); err != nil {
		t.Fatalf("config-sample.yaml not written: %v", err)
	}
}

func TestCreateConfigFromKubeKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cluster.yaml")
	code, _, errOut := ksboot(t, "create", "config", "--from-kubekey", "../../cluster/testdata/kubekey-sample.yaml", "-f", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "hosts[0] (master): dropped SSH settings user, password") {
		t.Errorf("no warning naming the dropped SSH fields:\n%s", errOut)
	}
	if strings.Contains(errOut, "Qcloud@123") {
		t.Error("a password was printed")
	}
	if code, _, errOut := ksboot(t, "validate", "-f", file); code != 0 {
		t.Errorf("imported file does not validate: %s", errOut)
	}
}

func TestValidateReportsEverythingWithExitCode3(t *testing.T) {
	code, _, errOut := ksboot(t, "validate", "-f", "../../cluster/testdata/invalid/many.yaml")
	if code != exitValidation {
		t.Errorf("exit code %d, want %d", code, exitValidation)
	}
	for _, want := range []string{
		"many.yaml:9: spec.hosts[0].pasword: unknown field",
		"many.yaml:10: spec.hosts[1].name: duplicate host name",
		"many.yaml:41: spec.discovery.mode:",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("output lacks %q:\n%s", want, errOut)
		}
	}
	if code, _, _ := ksboot(t, "validate", "-f", "/nonexistent.yaml"); code != exitFailure {
		t.Errorf("missing file: exit %d, want %d", code, exitFailure)
	}
}

// isoFiles reads every file of an ISO with go-diskfs.
func isoFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	fsys := openISO(t, path)
	entries, err := fsys.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		data, err := fsys.ReadFile(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}

// openISO opens an image with go-diskfs, read-only, for the rest of the test.
func openISO(t *testing.T, path string) filesystem.FileSystem {
	t.Helper()
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	fsys, err := d.GetFilesystem(0)
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// nodeConfigFromUserData extracts /etc/ksboot/node.yaml from a rendered user-data.
func nodeConfigFromUserData(t *testing.T, userData []byte) *cluster.NodeConfig {
	t.Helper()
	var cc cloudinit.CloudConfig
	if err := yaml.Unmarshal(userData, &cc); err != nil {
		t.Fatal(err)
	}
	for _, f := range cc.WriteFiles {
		if f.Path == "/etc/ksboot/node.yaml" {
			nc, err := cluster.ParseNodeConfig("node.yaml", []byte(f.Content))
			if err != nil {
				t.Fatal(err)
			}
			return nc
		}
	}
	t.Fatal("no node.yaml in user-data")
	return nil
}

func TestBuildSeedISOs(t *testing.T) {
	dir := t.TempDir()
	agent := fakeAgent(t)
	out := filepath.Join(dir, "seeds")
	code, stdout, errOut := ksboot(t, "build-seed", "-o", out, "--agent", agent)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, errOut)
	}
	if strings.Contains(stdout+errOut, "PRIVATE KEY") {
		t.Error("a key was printed")
	}
	secrets, err := cluster.ReadSecrets(filepath.Join(dir, "sample-secrets"))
	if err != nil {
		t.Fatalf("secrets not beside the output directory: %v", err)
	}
	if strings.Contains(stdout+errOut, secrets.BootstrapToken) {
		t.Error("the bootstrap token was printed")
	}
	agentData, _ := os.ReadFile(agent)
	var cpPin string
	for _, node := range []string{"node1", "node2", "node3"} {
		path := filepath.Join(out, node+".iso")
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 0600", path, st.Mode().Perm())
		}
		files := isoFiles(t, path)
		for _, name := range []string{"user-data", "meta-data", "network-config", "ksboot"} {
			if len(files[name]) == 0 {
				t.Errorf("%s: %s missing or empty", path, name)
			}
		}
		if !bytes.Equal(files["ksboot"], agentData) {
			t.Errorf("%s: the agent differs from --agent", path)
		}
		nc := nodeConfigFromUserData(t, files["user-data"])
		hasKey := bytes.Contains(files["user-data"], []byte("PRIVATE KEY"))
		if nc.Node.IsControlPlane() {
			if !hasKey {
				t.Errorf("%s: control-plane seed lacks the CA key", node)
			}
			pin, err := cluster.CAPinFromPEM([]byte(nc.Secrets.CACert))
			if err != nil {
				t.Fatal(err)
			}
			cpPin = pin
		} else if hasKey {
			t.Errorf("%s: worker seed holds a PRIVATE KEY block", node)
		}
		if nc.Secrets.CACertHash != cpPin || cpPin == "" {
			t.Errorf("%s: pin %s differs from the control plane CA's %s", node, nc.Secrets.CACertHash, cpPin)
		}
	}
	// Seeds built later reuse the secrets, so they belong to the same cluster.
	code, _, errOut = ksboot(t, "build-seed", "-o", out, "--agent", agent, "--node", "node3")
	if code != 0 || strings.Contains(errOut, "created cluster secrets") {
		t.Fatalf("second build: exit %d, %s", code, errOut)
	}
}

func TestBuildSeedReproducible(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dir := t.TempDir()
	agent := fakeAgent(t)
	secrets := filepath.Join(dir, "secrets")
	for _, format := range []string{"iso", "vfat"} {
		var images [2][]byte
		for i := range images {
			out := filepath.Join(dir, format, string(rune('a'+i)))
			if code, _, errOut := ksboot(t, "build-seed", "-o", out, "--agent", agent, "--secrets", secrets, "--node", "node2", "--format", format); code != 0 {
				t.Fatalf("%s: %s", format, errOut)
			}
			ext := map[string]string{"iso": ".iso", "vfat": ".img"}[format]
			data, err := os.ReadFile(filepath.Join(out, "node2"+ext))
			if err != nil {
				t.Fatal(err)
			}
			images[i] = data
		}
		if !bytes.Equal(images[0], images[1]) {
			t.Errorf("%s: two builds with the same inputs, secrets and SOURCE_DATE_EPOCH differ", format)
		}
	}
}

func TestBuildSeedUserDataAndGeneric(t *testing.T) {
	dir := t.TempDir()
	agent := fakeAgent(t)
	out := filepath.Join(dir, "pxe")
	if code, _, errOut := ksboot(t, "build-seed", "--format", "user-data", "-o", out, "--agent", agent); code == 0 || !strings.Contains(errOut, "--agent-url") {
		t.Errorf("user-data without --agent-url: exit %d, %s", code, errOut)
	}
	code, _, errOut := ksboot(t, "build-seed", "--format", "user-data", "-o", out, "--agent", agent, "--agent-url", "http://10.0.0.1:8080/ksboot", "--role", "worker", "--generic")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, f := range []string{"generic-worker/user-data", "generic-worker/meta-data", "ksboot"} {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o", f, st.Mode().Perm())
		}
	}
	if _, err := os.Stat(filepath.Join(out, "generic-worker/network-config")); err == nil {
		t.Error("a generic worker seed must not carry one host's static address")
	}
	ud, _ := os.ReadFile(filepath.Join(out, "generic-worker/user-data"))
	if bytes.Contains(ud, []byte("PRIVATE KEY")) || !bytes.Contains(ud, []byte("http://10.0.0.1:8080/ksboot")) {
		t.Error("generic worker user-data has a key or lacks the agent URL")
	}
	nc := nodeConfigFromUserData(t, ud)
	if !nc.Node.Generic || nc.Node.Name != "" {
		t.Errorf("node info %+v", nc.Node)
	}
	if code, _, _ := ksboot(t, "build-seed", "--generic", "-o", out, "--agent", agent); code == 0 {
		t.Error("--generic without --role worker was accepted")
	}
	if code, _, errOut := ksboot(t, "build-seed", "--node", "ghost", "-o", out, "--agent", agent); code == 0 || !strings.Contains(errOut, "ghost") {
		t.Errorf("unknown --node: exit %d, %s", code, errOut)
	}
}

func TestBuildSeedInvalidFileExit3(t *testing.T) {
	code, _, errOut := ksboot(t, "build-seed", "-f", "../../cluster/testdata/invalid/many.yaml", "-o", t.TempDir())
	if code != exitValidation || !strings.Contains(errOut, "many.yaml:") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}
