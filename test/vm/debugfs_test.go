package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// A guest stopped while it ran leaves block bitmaps whose checksums do not match; debugfs
// must still read its files (run 27 lost two guests' status.json and pod logs this way).
func TestDebugfsReadsAnUncleanDisk(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "dumpe2fs", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian package e2fsprogs; hack/install-deps.sh installs it)", tool)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "var", "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	const want = `{"phase":"done"}`
	if err := os.WriteFile(filepath.Join(root, "var", "lib", "status.json"), []byte(want), 0o600); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.raw")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "1024", "-d", root, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}

	// Clear the first bytes of group 0's block bitmap: the blocks mkfs used now read as free,
	// and the bitmap no longer matches the checksum in the group descriptor.
	out, err := exec.Command("dumpe2fs", img).Output()
	if err != nil {
		t.Fatalf("dumpe2fs: %v", err)
	}
	m := regexp.MustCompile(`Block bitmap at (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("dumpe2fs printed no block bitmap:\n%s", out)
	}
	block, _ := strconv.ParseInt(string(m[1]), 10, 64)
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 4), block*1024); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The damage is real: debugfs without -c refuses the filesystem.
	plain, _ := exec.Command("debugfs", "-R", "stat /var/lib/status.json", img).CombinedOutput()
	if !regexp.MustCompile(`checksum does not match`).Match(plain) {
		t.Fatalf("the damaged bitmap did not show; debugfs printed:\n%s", plain)
	}

	got, err := debugfs(img, `cat "/var/lib/status.json"`)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("cat: got %q, want %q", got, want)
	}
}
