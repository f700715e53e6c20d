package image

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
)

// testTime is 2023-11-14T22:13:20Z.
var testTime = time.Unix(1700000000, 0).UTC()

// seedFiles is a typical seed: cloud-init's three files plus the agent
// binary, which is filled with a pattern so misplaced blocks show up.
func seedFiles(binarySize int) []File {
	bin := make([]byte, binarySize)
	for i := range bin {
		bin[i] = byte(i*7 + i>>11)
	}
	return []File{
		{Name: "user-data", Data: []byte("#cloud-config\nruncmd:\n  - [ksboot, agent, run]\n"), Mode: 0o644},
		{Name: "meta-data", Data: []byte("instance-id: node1\nlocal-hostname: node1\n"), Mode: 0o644},
		{Name: "network-config", Data: []byte("version: 2\nethernets: {}\n"), Mode: 0o644},
		{Name: "ksboot", Data: bin, Mode: 0o755},
	}
}

// tool returns the path of an external program or skips the test, naming
// the Debian package that provides it. blkid and fsck.fat live in sbin,
// which is not on every user's PATH.
func tool(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Skipf("%s not found; install the Debian package %s (apt-get install %s)", name, pkg, pkg)
	return ""
}

// run executes a program and returns its combined output, failing the
// test with that output when it exits non-zero.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	// xorriso and mtools print dates in the local zone.
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// blkidExport parses `blkid -o export`.
func blkidExport(t testing.TB, path string) map[string]string {
	t.Helper()
	out := run(t, tool(t, "blkid", "util-linux"), "-o", "export", path)
	kv := map[string]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// readBack opens an image with go-diskfs and checks that it holds exactly
// the given files with their content.
func readBack(t testing.TB, path string, want []File, wantType filesystem.Type, wantLabel string) filesystem.FileSystem {
	t.Helper()
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatalf("go-diskfs cannot open %s: %v", path, err)
	}
	t.Cleanup(func() { _ = d.Close() })
	fsys, err := d.GetFilesystem(0)
	if err != nil {
		t.Fatalf("go-diskfs finds no file system in %s: %v", path, err)
	}
	if fsys.Type() != wantType {
		t.Errorf("go-diskfs reads file system type %v, want %v", fsys.Type(), wantType)
	}
	if got := strings.TrimSpace(fsys.Label()); got != wantLabel {
		t.Errorf("go-diskfs reads label %q, want %q", got, wantLabel)
	}
	entries, err := fsys.ReadDir(".")
	if err != nil {
		t.Fatalf("go-diskfs ReadDir: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	var wantNames []string
	for _, f := range want {
		wantNames = append(wantNames, f.Name)
	}
	slices.Sort(names)
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Errorf("go-diskfs lists %q, want %q", names, wantNames)
	}
	for _, f := range want {
		got, err := fsys.ReadFile(f.Name)
		if err != nil {
			t.Errorf("go-diskfs ReadFile(%s): %v", f.Name, err)
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("go-diskfs reads %s as %d bytes that differ from the %d written", f.Name, len(got), len(f.Data))
		}
	}
	return fsys
}

// dirNames lists a directory, including hidden entries, so tests can
// assert that no temporary file or workspace was left behind.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func checkMode(t testing.TB, path string, want fs.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reproFiles is the file set the reproducibility tests build.
func reproFiles() []File { return seedFiles(1<<20 + 17) }

const helperEnv = "KSBOOT_IMAGE_TEST_BUILD"

// TestHelperBuild is not a test of its own: buildElsewhere runs the test
// binary again with only this function selected, to build an image in a
// process with a different time zone and environment.
func TestHelperBuild(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("only runs as a child of buildElsewhere")
	}
	kind, path, _ := strings.Cut(spec, ":")
	write := WriteISO
	if kind == "vfat" {
		write = WriteVFAT
	}
	if err := write(path, reproFiles(), Options{ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
}

// buildElsewhere builds reproFiles in a child process whose time zone is
// tz and whose $SOURCE_DATE_EPOCH disagrees with the ModTime passed in,
// since go-diskfs reads that variable by itself.
func buildElsewhere(t *testing.T, kind, tz string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seed")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBuild$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+kind+":"+path, "TZ="+tz, "SOURCE_DATE_EPOCH=86400")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building in a child process: %v\n%s", err, out)
	}
	return mustRead(t, path)
}
