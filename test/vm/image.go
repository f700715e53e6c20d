package vm

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// recipeVersion changes whenever the build steps change in a way the recipe fields do not show,
// so that every cached image built by an older harness is rebuilt.
const recipeVersion = 1

// DefaultHaltOn is the file whose appearance powers a guest off unless ImageOptions.HaltOn says
// otherwise.
const DefaultHaltOn = "/var/lib/ksboot/status.json"

// defaultSizeMiB is the size of the root filesystem; the file is sparse, about 500 MB are used.
const defaultSizeMiB = 1536

// buildTimeout bounds one image build including the wait for another process's build.
const buildTimeout = 20 * time.Minute

// basePackages are installed into every image on top of mmdebstrap's minbase variant.
var basePackages = []string{
	"linux-image-cloud-amd64", "systemd-sysv", "udev", "cloud-init",
	"iproute2", "ifupdown", "isc-dhcp-client", "procps",
	// ssh-keygen, for cloud-init's host keys (see 99-ksboot-test.cfg below).
	"openssh-client",
}

// ImageOptions is the part of the recipe a test may choose. Every field is part of the cache
// key, so two tests with different options get two images.
type ImageOptions struct {
	// HaltOn is the absolute path, inside the guest, whose appearance powers the guest off
	// about five seconds later (after cloud-final.service if that is still running).
	// Empty means DefaultHaltOn.
	HaltOn string
	// ExtraPackages are Debian bookworm packages installed besides the base set.
	ExtraPackages []string
	// SizeMiB is the size of the root filesystem in MiB; 0 means 1536. A guest's disk can
	// still be made larger per boot with Options.DiskMiB.
	SizeMiB int
}

// Image is a cached guest image. Its files are shared by every test on the machine and must
// not be modified; each guest boots from its own copy-on-write overlay.
type Image struct {
	// Dir is the cache directory holding the files below.
	Dir string
	// Kernel and Initrd are the guest's kernel and initramfs, booted with qemu -kernel/-initrd.
	Kernel, Initrd string
	// Root is the raw ext4 root filesystem, the guest's /dev/vda.
	Root string
	// Key identifies the recipe (harness version, package list, options, host apt sources).
	Key string
	// HaltOn is the guest path whose appearance powers the guest off.
	HaltOn string
	// SizeMiB is the size of Root in MiB.
	SizeMiB int
	// BuildTime is how long this call spent building the image, 0 if it came from the cache.
	BuildTime time.Duration
}

// recipe is everything that determines the image's content; its hash is the cache key.
type recipe struct {
	Version  int               `json:"version"`
	Suite    string            `json:"suite"`
	Variant  string            `json:"variant"`
	Packages []string          `json:"packages"`
	SizeMiB  int               `json:"sizeMiB"`
	HaltOn   string            `json:"haltOn"`
	Sources  string            `json:"sourcesSHA256"`
	Files    map[string]string `json:"files"`
	Remove   []string          `json:"remove"`
}

// GuestImage returns the cached image for opts, building it first if no process on this
// machine has built it yet. A build takes about a minute (mmdebstrap from the host's mirror);
// it happens in a temporary directory renamed into place at the end, under a lock file, so a
// crashed build leaves no half image and two test processes never build at once.
// It skips the test as Available does and fails it if the build fails.
func GuestImage(t testing.TB, opts ImageOptions) *Image {
	t.Helper()
	Available(t)
	root, err := cacheRoot()
	if err != nil {
		t.Fatalf("guest image: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	img, err := buildImage(ctx, t, root, opts)
	if err != nil {
		t.Fatalf("guest image: %v", err)
	}
	return img
}

func cacheRoot() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory (set XDG_CACHE_HOME or HOME): %w", err)
	}
	dir := filepath.Join(base, "ksboot", "guest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating image cache %s: %w", dir, err)
	}
	return dir, nil
}

// newRecipe validates opts and turns them into the full recipe; sources is the content of
// the host's apt sources file.
func newRecipe(opts ImageOptions, sources []byte) (recipe, error) {
	halt := opts.HaltOn
	if halt == "" {
		halt = DefaultHaltOn
	}
	if !filepath.IsAbs(halt) || filepath.Clean(halt) != halt || strings.ContainsAny(halt, " \t\n\\%\"'") {
		return recipe{}, fmt.Errorf("ImageOptions.HaltOn %q: want a clean absolute path without spaces, quotes, backslashes or %%", halt)
	}
	size := opts.SizeMiB
	if size == 0 {
		size = defaultSizeMiB
	}
	if size < 1024 {
		return recipe{}, fmt.Errorf("ImageOptions.SizeMiB %d: want at least 1024 (the base system uses about 500 MiB)", size)
	}
	pkgs := slices.Clone(basePackages)
	for _, p := range opts.ExtraPackages {
		if p == "" || strings.ContainsAny(p, ", \t\n") {
			return recipe{}, fmt.Errorf("ImageOptions.ExtraPackages: bad package name %q", p)
		}
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	pkgs = slices.Compact(pkgs)

	files := guestFiles(halt)
	if slices.Contains(pkgs, "resolvconf") {
		// With resolvconf the guest behaves like a cloud image: ifupdown's dns-nameservers
		// and dhclient feed /etc/resolv.conf through resolvconf's own link, which
		// mmdebstrap's copy of the host's resolver file would otherwise replace.
		files["/etc/resolv.conf"] = "->/run/resolvconf/resolv.conf"
	}
	sum := sha256.Sum256(sources)
	return recipe{
		Version:  recipeVersion,
		Suite:    "bookworm",
		Variant:  "minbase",
		Packages: pkgs,
		SizeMiB:  size,
		HaltOn:   halt,
		Sources:  hex.EncodeToString(sum[:]),
		Files:    files,
		Remove:   guestRemovals,
	}, nil
}

func (r recipe) key() string {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // a struct of strings and ints always marshals
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("v%d-%s", r.Version, hex.EncodeToString(sum[:8]))
}

// guestFiles are written into the root filesystem after mmdebstrap, path → content.
// A content starting with "->" makes a symbolic link to the rest.
func guestFiles(haltOn string) map[string]string {
	return map[string]string{
		// Only a NoCloud seed (or nothing) configures the guest; without C.UTF-8
		// cloud-config.service fails (minbase has no en_US locale). One cheap host key type
		// (ssh-keygen comes from openssh-client) instead of RSA and friends saves boot time;
		// an empty list would skip key generation but fails cloud-init's schema check, which
		// then prints "Invalid cloud-config provided" on every boot and would hide, or be
		// mistaken for, schema errors in the seeds under test.
		"/etc/cloud/cloud.cfg.d/99-ksboot-test.cfg": "" +
			"# Written by the ksboot VM test harness (test/vm).\n" +
			"datasource_list: [ NoCloud, None ]\n" +
			"locale: C.UTF-8\n" +
			"ssh_genkeytypes: [ ed25519 ]\n",
		"/etc/fstab": "/dev/vda / ext4 rw 0 0\n",
		// mmdebstrap copies the host's name and resolver; a guest gets its own from cloud-init.
		"/etc/hostname":    "localhost\n",
		"/etc/resolv.conf": "",
		// Service output on the serial console makes the serial log the test's story.
		"/etc/systemd/journald.conf.d/90-ksboot-test.conf": "" +
			"[Journal]\n" +
			"ForwardToConsole=yes\n" +
			"MaxLevelConsole=info\n",
		"/etc/systemd/system/ksboot-test-halt.path": "" +
			"# Written by the ksboot VM test harness (test/vm).\n" +
			"[Unit]\n" +
			"Description=ksboot test harness: power off when " + haltOn + " exists\n" +
			"\n" +
			"[Path]\n" +
			"PathExists=" + haltOn + "\n" +
			"Unit=ksboot-test-halt.service\n" +
			"\n" +
			"[Install]\n" +
			"WantedBy=multi-user.target\n",
		"/etc/systemd/system/ksboot-test-halt.service": "" +
			"# Written by the ksboot VM test harness (test/vm).\n" +
			"[Unit]\n" +
			"Description=ksboot test harness: power off\n" +
			"# Never cut cloud-init's last stage short when it wrote the watched file itself.\n" +
			"After=cloud-final.service\n" +
			"# systemd itself powers off once the pause is over: no systemctl (which would ask\n" +
			"# logind over D-Bus, absent here) racing the shutdown it starts.\n" +
			"SuccessAction=poweroff\n" +
			"\n" +
			"[Service]\n" +
			"Type=oneshot\n" +
			"# The pause lets the journal reach the console and the disk before power-off.\n" +
			"ExecStart=/bin/sh -c 'echo \"" + haltMarker + ": " + haltOn + " exists, powering off in 5 s\"; sleep 5'\n",
		"/etc/systemd/system/multi-user.target.wants/ksboot-test-halt.path": "->/etc/systemd/system/ksboot-test-halt.path",
	}
}

// haltMarker starts the line the halt service prints on the console.
const haltMarker = "ksboot-test-halt"

// guestRemovals are unit links removed from the image: timers that would run apt or scrub
// disks in the middle of a test.
var guestRemovals = []string{
	"/etc/systemd/system/timers.target.wants/apt-daily-upgrade.timer",
	"/etc/systemd/system/timers.target.wants/apt-daily.timer",
	"/etc/systemd/system/timers.target.wants/dpkg-db-backup.timer",
	"/etc/systemd/system/timers.target.wants/e2scrub_all.timer",
	"/etc/systemd/system/timers.target.wants/fstrim.timer",
}

func imageIn(dir, key string, r recipe) *Image {
	return &Image{
		Dir:     dir,
		Kernel:  filepath.Join(dir, "vmlinuz"),
		Initrd:  filepath.Join(dir, "initrd.img"),
		Root:    filepath.Join(dir, "root.ext4"),
		Key:     key,
		HaltOn:  r.HaltOn,
		SizeMiB: r.SizeMiB,
	}
}

// complete reports whether img's files all exist; the rename makes them appear together, so
// this only guards against someone deleting files by hand.
func (img *Image) complete() bool {
	for _, p := range []string{img.Kernel, img.Initrd, img.Root} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

func buildImage(ctx context.Context, t testing.TB, cache string, opts ImageOptions) (*Image, error) {
	sources, err := os.ReadFile(hostSources)
	if err != nil {
		return nil, fmt.Errorf("reading host apt sources: %w", err)
	}
	r, err := newRecipe(opts, sources)
	if err != nil {
		return nil, err
	}
	key := r.key()
	final := filepath.Join(cache, key)
	img := imageIn(final, key, r)
	if img.complete() {
		return img, nil
	}

	unlock, err := lockFile(ctx, t, filepath.Join(cache, key+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if img.complete() { // another process built it while we waited
		return img, nil
	}
	if _, err := os.Stat(final); err == nil {
		if err := removeAllSafe(final); err != nil {
			return nil, fmt.Errorf("removing incomplete image %s: %w", final, err)
		}
	}
	// Leftovers of builds that crashed while holding this lock.
	if old, _ := filepath.Glob(filepath.Join(cache, ".tmp-"+key+"-*")); len(old) > 0 {
		for _, dir := range old {
			if err := removeAllSafe(dir); err != nil {
				return nil, fmt.Errorf("removing leftover build %s: %w", dir, err)
			}
		}
	}

	start := time.Now()
	t.Logf("building guest image %s (mmdebstrap, about a minute) in %s", key, cache)
	tmp, err := os.MkdirTemp(cache, ".tmp-"+key+"-")
	if err != nil {
		return nil, fmt.Errorf("creating build directory: %w", err)
	}
	defer func() {
		if tmp != "" {
			if err := removeAllSafe(tmp); err != nil {
				t.Logf("guest image: %v", err)
			}
		}
	}()
	if err := build(ctx, tmp, r); err != nil {
		return nil, fmt.Errorf("building image %s: %w", key, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		return nil, fmt.Errorf("publishing built image: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("moving built image into place: %w", err)
	}
	tmp = ""
	img.BuildTime = time.Since(start)
	t.Logf("built guest image %s in %s", key, img.BuildTime.Round(time.Second))
	return img, nil
}

// build runs the recipe in dir, leaving vmlinuz, initrd.img, root.ext4 and recipe.json.
func build(ctx context.Context, dir string, r recipe) error {
	rootfs := filepath.Join(dir, "rootfs")
	logPath := filepath.Join(dir, "mmdebstrap.log")
	args := []string{
		"--variant=" + r.Variant,
		"--include=" + strings.Join(r.Packages, ","),
		r.Suite, rootfs, hostSources,
	}
	if err := runLogged(ctx, logPath, "mmdebstrap", args...); err != nil {
		return err
	}
	if err := customize(rootfs, r); err != nil {
		return err
	}
	for _, k := range []struct{ glob, dst string }{
		{"vmlinuz-*", "vmlinuz"},
		{"initrd.img-*", "initrd.img"},
	} {
		matches, _ := filepath.Glob(filepath.Join(rootfs, "boot", k.glob))
		if len(matches) != 1 {
			return fmt.Errorf("want exactly one /boot/%s in the root filesystem, found %d", k.glob, len(matches))
		}
		if err := copyFile(matches[0], filepath.Join(dir, k.dst)); err != nil {
			return err
		}
	}
	if err := runLogged(ctx, filepath.Join(dir, "mkfs.log"), "mkfs.ext4",
		"-q", "-F", "-L", "ksboot-root", "-d", rootfs, filepath.Join(dir, "root.ext4"),
		fmt.Sprintf("%dM", r.SizeMiB)); err != nil {
		return err
	}
	if err := removeAllSafe(rootfs); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "recipe.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing recipe.json: %w", err)
	}
	return nil
}

// customize applies the recipe's files and removals to the root filesystem.
func customize(rootfs string, r recipe) error {
	paths := make([]string, 0, len(r.Files))
	for p := range r.Files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		content := r.Files[p]
		dst := filepath.Join(rootfs, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("customizing image: %w", err)
		}
		if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("customizing image: %w", err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, dst); err != nil {
				return fmt.Errorf("customizing image: %w", err)
			}
			continue
		}
		if err := os.WriteFile(dst, []byte(content), 0o644); err != nil {
			return fmt.Errorf("customizing image: %w", err)
		}
	}
	for _, p := range r.Remove {
		if err := os.Remove(filepath.Join(rootfs, p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("customizing image: %w", err)
		}
	}
	return nil
}

// lockFile takes an exclusive flock on path, polling until ctx ends so that the wait is
// bounded and says what it waits for.
func lockFile(ctx context.Context, t testing.TB, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening image lock: %w", err)
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !logged {
			t.Logf("waiting for another process to finish building the guest image (lock %s)", path)
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s held by another image build: %w", path, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// runLogged runs a command with its output in logPath; a failure reports the log's tail.
func runLogged(ctx context.Context, logPath, name string, args ...string) error {
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("creating %s: %w", logPath, err)
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w; last lines of its output:\n%s", shellJoin(cmd.Args), err, tailFile(logPath, 30))
	}
	return nil
}

// removeAllSafe removes dir unless something is mounted below it: a killed mmdebstrap can
// leave the host's /dev or /proc bound into its root filesystem, and removing through those
// would damage the host.
func removeAllSafe(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("not removing %s: filesystems are mounted below it (%s); unmount them (umount -R) first",
			dir, strings.Join(mounts, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}

func mountsUnder(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == abs || strings.HasPrefix(mp, abs+"/") {
			found = append(found, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	return found, nil
}

// unescapeMount undoes the octal escapes (\040 for a space) of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return nil
}
