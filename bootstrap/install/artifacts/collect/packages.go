package collect

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/image"
)

// osTarget is a distribution to collect packages for.
type osTarget struct {
	// Name is "<ID>-<VERSION_ID>" from os-release ("debian-12", "ubuntu-22.04"): the directory
	// under packages/ and the manifest entries' os, which the install phase matches against the
	// node's os-release.
	Name    string
	ID      string
	Version string
	// Family is "debian", "rhel" or "suse".
	Family string
}

var osPattern = regexp.MustCompile(`^([a-z]+(?:-[a-z]+)*)-?([0-9]+(?:\.[0-9]+)*)$`)

// ParseOS reads an OS as `--os` takes it: os-release's ID and VERSION_ID, with or without a
// dash between them ("debian-12", "debian12", "ubuntu-22.04", "rocky9").
func ParseOS(s string) (osTarget, error) {
	m := osPattern.FindStringSubmatch(strings.ToLower(strings.TrimSpace(s)))
	if m == nil {
		return osTarget{}, fmt.Errorf("%w: OS %q: write it as os-release's ID and VERSION_ID, such as debian-12 or ubuntu-22.04", ErrInvalid, s)
	}
	t := osTarget{Name: m[1] + "-" + m[2], ID: m[1], Version: m[2]}
	t.Family = host.OS{ID: t.ID}.Family()
	if t.Family == "" {
		return osTarget{}, fmt.Errorf("%w: OS %q: not a Debian, Red Hat or SUSE distribution that ksboot installs packages on", ErrInvalid, s)
	}
	return t, nil
}

// checkPackageHost refuses, before anything is downloaded, what Collect cannot do: packages of
// RPM distributions, and packages of a distribution other than this machine's (apt-get
// resolves dependencies against this machine's package sources).
func (c *collector) checkPackageHost(ctx context.Context, t osTarget) error {
	fromDir := fmt.Sprintf("put the packages (with their dependencies) under %s/%s/ of a bundle directory and pack it with --from-dir", image.PackagesDir, t.Name)
	if t.Family != "debian" {
		return fmt.Errorf("%w: packages for %s: downloading RPM packages is not supported yet; %s", ErrInvalid, t.Name, fromDir)
	}
	hostOS, err := host.ReadOS(c.o.HostRoot)
	if err != nil {
		return fmt.Errorf("packages for %s: %w; run ksboot bundle on a %s machine, or %s", t.Name, err, t.Name, fromDir)
	}
	if hostOS.ID != t.ID || (hostOS.VersionID != t.Version && strconv.Itoa(hostOS.Major()) != t.Version) {
		this := hostOS.Pretty
		if this == "" {
			this = hostOS.ID + " " + hostOS.VersionID
		}
		return fmt.Errorf("packages for %s: apt-get downloads packages for the machine it runs on, and this machine is %s: run ksboot bundle on a %s machine, or %s",
			t.Name, this, t.Name, fromDir)
	}
	if _, err := c.o.Exec.Run(ctx, host.Cmd{Name: "apt-get", Args: []string{"--version"}}); err != nil {
		return fmt.Errorf("packages for %s: apt-get does not run on this machine: %w", t.Name, err)
	}
	return nil
}

// packages downloads install.RequiredPackages of the distribution's family, with every
// dependency, for each architecture into packages/<os>/, with apt-get against a private state:
// an empty dpkg status (so nothing counts as installed and the whole dependency closure is
// downloaded: a node installs from the bundle only what it lacks), its own package lists for
// the architecture, and its own cache. This machine's apt sources are used; its own state is
// neither read nor changed. Packages already in packages/<os>/ are handed to apt-get in the
// cache, which keeps those that match its index instead of downloading them again.
func (c *collector) packages(ctx context.Context, t osTarget) ([]artifacts.Entry, string, error) {
	outDir := filepath.Join(c.dir, image.PackagesDir, t.Name)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, "", err
	}
	// The private state sits in the work directory, on the same file system as the packages
	// (hard links, renames), and is removed afterwards (or by the next run's cleanup).
	tmp, err := os.MkdirTemp(c.dir, artifacts.TempPrefix+"apt-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(tmp)

	var names []string           // file names in outDir this run yields
	fetched := map[string]bool{} // those apt-get downloaded
	for _, arch := range c.o.Arches {
		got, err := c.aptDownload(ctx, t, arch, filepath.Join(tmp, arch), outDir)
		if err != nil {
			return nil, "", err
		}
		for n, downloaded := range got {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
			fetched[n] = fetched[n] || downloaded
		}
	}
	slices.Sort(names)
	var entries []artifacts.Entry
	for _, n := range names {
		e, ok := image.PackageEntry(n)
		if !ok {
			return nil, "", fmt.Errorf("packages for %s: apt-get downloaded %s, a file name ksboot cannot read a package name and version from", t.Name, n)
		}
		e.OS = t.Name
		e.Path = path.Join(image.PackagesDir, t.Name, n)
		if e.SHA256, err = artifacts.FileSHA256(filepath.Join(outDir, n)); err != nil {
			return nil, "", err
		}
		entries = append(entries, e)
	}
	n := 0
	for _, f := range fetched {
		if f {
			n++
		}
	}
	how := fmt.Sprintf("%d packages for %s and their dependencies (%d downloaded, %d already there)",
		len(entries), strings.Join(install.RequiredPackages[t.Family], ", "), n, len(entries)-n)
	return entries, how, nil
}

// aptDownload runs apt-get for one architecture in the private directory d and moves the
// packages into outDir. It returns the file names, each with whether apt-get downloaded it
// (false: a file of an earlier run that apt-get found good).
func (c *collector) aptDownload(ctx context.Context, t osTarget, arch, d, outDir string) (map[string]bool, error) {
	stateDir, cacheDir := filepath.Join(d, "state"), filepath.Join(d, "cache")
	archives := filepath.Join(cacheDir, "archives")
	for _, dir := range []string{filepath.Join(stateDir, "lists", "partial"), filepath.Join(archives, "partial")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	status := filepath.Join(stateDir, "status")
	if err := os.WriteFile(status, nil, 0o644); err != nil {
		return nil, err
	}
	// Hand apt-get what an earlier run downloaded for this architecture.
	have, err := os.ReadDir(outDir)
	if err != nil {
		return nil, err
	}
	seeded := map[string]bool{}
	for _, f := range have {
		e, ok := image.PackageEntry(f.Name())
		if !ok || !f.Type().IsRegular() || e.Kind != artifacts.KindDeb || (e.Arch != "" && e.Arch != arch) {
			continue
		}
		if os.Link(filepath.Join(outDir, f.Name()), filepath.Join(archives, f.Name())) == nil {
			seeded[f.Name()] = true
		}
	}
	opts := []string{"-q",
		"-o", "Dir::State=" + stateDir, "-o", "Dir::State::Status=" + status, "-o", "Dir::Cache=" + cacheDir,
		"-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root", "-o", "Acquire::Languages=none",
		"-o", "APT::Architecture=" + arch, "-o", "APT::Architectures=" + arch}
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	what := fmt.Sprintf("downloading packages for %s (linux/%s)", t.Name, arch)
	c.o.Logger.Debug(what, "packages", strings.Join(install.RequiredPackages[t.Family], ","))
	if _, err := c.o.Exec.Run(ctx, host.Cmd{Name: "apt-get", Env: env, Args: append([]string{"update"}, opts...), Stream: c.o.Progress}); err != nil {
		return nil, fmt.Errorf("%s: reading the package lists of this machine's apt sources: %w", what, err)
	}
	args := append(append([]string{"install", "--download-only", "-y", "--no-install-recommends"}, opts...), install.RequiredPackages[t.Family]...)
	if _, err := c.o.Exec.Run(ctx, host.Cmd{Name: "apt-get", Env: env, Args: args, Stream: c.o.Progress}); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	debs, err := os.ReadDir(archives)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, f := range debs {
		if !f.Type().IsRegular() || !strings.HasSuffix(f.Name(), ".deb") {
			continue
		}
		src, dst := filepath.Join(archives, f.Name()), filepath.Join(outDir, f.Name())
		// A handed-over file that apt-get kept is still the same file; one it found bad it
		// replaced with a download.
		if seeded[f.Name()] && sameFile(src, dst) {
			names[f.Name()] = false
			continue
		}
		if err := os.Rename(src, dst); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		names[f.Name()] = true
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: apt-get downloaded nothing", what)
	}
	return names, nil
}

func sameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}
