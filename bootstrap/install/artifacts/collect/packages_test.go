package collect

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/image"
)

func TestParseOS(t *testing.T) {
	tests := []struct {
		in, name, family string
		err              string
	}{
		{in: "debian-12", name: "debian-12", family: "debian"},
		{in: "debian12", name: "debian-12", family: "debian"},
		{in: "Ubuntu22.04", name: "ubuntu-22.04", family: "debian"},
		{in: "rocky-9", name: "rocky-9", family: "rhel"},
		{in: "opensuse-leap-15.5", name: "opensuse-leap-15.5", family: "suse"},
		{in: "debian", err: "write it as os-release's ID and VERSION_ID"},
		{in: "windows-11", err: "not a Debian, Red Hat or SUSE distribution"},
	}
	for _, tc := range tests {
		got, err := ParseOS(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseOS(%q) = %+v, %v; want an ErrInvalid with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.Name != tc.name || got.Family != tc.family {
			t.Errorf("ParseOS(%q) = %+v, %v; want %s (%s)", tc.in, got, err, tc.name, tc.family)
		}
	}
}

// fakeApt stands in for apt-get: `install --download-only` puts a .deb per required package
// (and one architecture-independent dependency) into the archives directory it is given,
// unless the file is already there, as apt-get keeps a cached package that matches its index.
type fakeApt struct {
	mu         sync.Mutex
	calls      []string
	downloaded []string
}

func (f *fakeApt) Run(_ context.Context, c host.Cmd) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c.String())
	if c.Name != "apt-get" || len(c.Args) == 0 || c.Args[0] != "install" {
		return nil, nil
	}
	var cache, arch, status string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "Dir::Cache="); ok {
			cache = v
		}
		if v, ok := strings.CutPrefix(a, "APT::Architecture="); ok {
			arch = v
		}
		if v, ok := strings.CutPrefix(a, "Dir::State::Status="); ok {
			status = v
		}
	}
	if st, err := os.Stat(status); err != nil || st.Size() != 0 {
		return nil, errors.New("the dpkg status is not empty")
	}
	files := []string{"libtirpc-common_1.3.3+ds-1_all.deb"}
	for _, p := range c.Args[len(c.Args)-len(install.RequiredPackages["debian"]):] {
		files = append(files, p+"_1.0-1_"+arch+".deb")
	}
	for _, name := range files {
		p := filepath.Join(cache, "archives", name)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			return nil, err
		}
		f.downloaded = append(f.downloaded, name)
	}
	return []byte("Download complete and in download only mode\n"), nil
}

func packageOptions(t *testing.T, runner host.Runner, osRelease string, osList ...string) Options {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "os-release"), []byte(osRelease), 0o644); err != nil {
		t.Fatal(err)
	}
	return Options{Cluster: &cluster.Cluster{}, Arches: []string{"amd64", "arm64"}, WorkDir: t.TempDir(),
		OS: osList, Exec: runner, HostRoot: host.Root(root)}
}

const debian12 = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"

func TestPackages(t *testing.T) {
	apt := &fakeApt{}
	o := packageOptions(t, apt, debian12, "debian12")
	o, targets, err := o.check()
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{o: o, c: o.Cluster, dir: o.WorkDir, state: &state{}}
	ctx := context.Background()
	if err := c.checkPackageHost(ctx, targets[0]); err != nil {
		t.Fatal(err)
	}
	entries, how, err := c.packages(ctx, targets[0])
	if err != nil {
		t.Fatal(err)
	}
	// Seven packages for two architectures, and one shared by both.
	if len(entries) != 17 || !strings.Contains(how, "17 packages") || !strings.Contains(how, "17 downloaded, 0 already there") {
		t.Errorf("%d entries (%s)", len(entries), how)
	}
	for _, e := range entries {
		sum, err := artifacts.FileSHA256(filepath.Join(o.WorkDir, filepath.FromSlash(e.Path)))
		if e.Kind != artifacts.KindDeb || e.OS != "debian-12" || !strings.HasPrefix(e.Path, "packages/debian-12/") || err != nil || sum != e.SHA256 {
			t.Errorf("entry %+v: sha256 %s, %v", e, sum, err)
		}
	}
	m := &artifacts.Manifest{FormatVersion: artifacts.ManifestFormatVersion, Artifacts: entries}
	if _, err := m.Marshal(); err != nil {
		t.Errorf("the entries do not make a valid manifest: %v", err)
	}
	for _, want := range []string{
		"apt-get --version",
		"apt-get update -q -o Dir::State=",
		"APT::Architecture=arm64 -o APT::Architectures=arm64",
		"apt-get install --download-only -y --no-install-recommends -q",
		"socat conntrack ebtables ipset iptables curl openssl tar",
	} {
		if !slices.ContainsFunc(apt.calls, func(c string) bool { return strings.Contains(c, want) }) {
			t.Errorf("no command with %q in:\n%s", want, strings.Join(apt.calls, "\n"))
		}
	}
	// apt-get worked in a private directory, which is gone.
	left, _ := filepath.Glob(filepath.Join(o.WorkDir, artifacts.TempPrefix+"*"))
	if len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}

	// A second run hands apt-get what the first downloaded: nothing is downloaded again.
	apt.downloaded = nil
	entries2, how, err := c.packages(ctx, targets[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(apt.downloaded) != 0 || !reflect.DeepEqual(entries, entries2) || !strings.Contains(how, "0 downloaded, 17 already there") {
		t.Errorf("second run downloaded %v (%s)", apt.downloaded, how)
	}
}

func TestPackagesRefused(t *testing.T) {
	tests := []struct {
		name, osRelease, os string
		invalid             bool
		want                []string
	}{
		{name: "rpm", osRelease: debian12, os: "rocky-9", invalid: true,
			want: []string{"packages for rocky-9", "RPM packages is not supported yet", "packages/rocky-9/", "--from-dir"}},
		{name: "another release", osRelease: "PRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\nID=debian\nVERSION_ID=\"11\"\n", os: "debian-12",
			want: []string{"this machine is Debian GNU/Linux 11 (bullseye)", "run ksboot bundle on a debian-12 machine", "--from-dir"}},
		{name: "another distribution", osRelease: "ID=ubuntu\nVERSION_ID=\"22.04\"\n", os: "debian-12",
			want: []string{"this machine is ubuntu 22.04"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			apt := &fakeApt{}
			_, err := Collect(context.Background(), packageOptions(t, apt, tc.osRelease, tc.os))
			if err == nil || errors.Is(err, ErrInvalid) != tc.invalid {
				t.Fatalf("err = %v (invalid input: %v, want %v)", err, errors.Is(err, ErrInvalid), tc.invalid)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if len(apt.calls) > 0 {
				t.Errorf("ran %q before refusing", apt.calls)
			}
		})
	}
}

// TestPackagesRealApt downloads the required packages of this machine's distribution with the
// real apt-get and its configured sources (network), for its own architecture.
func TestPackagesRealApt(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads Debian packages over the network")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("apt-get is not installed")
	}
	hostOS, err := host.ReadOS("/")
	if err != nil || hostOS.Family() != "debian" {
		t.Skipf("not a Debian-family machine (%+v, %v)", hostOS, err)
	}
	name := hostOS.ID + "-" + hostOS.VersionID
	o := Options{Cluster: &cluster.Cluster{}, Arches: []string{"amd64"}, WorkDir: t.TempDir(), OS: []string{name}}
	o, targets, err := o.check()
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{o: o, c: o.Cluster, dir: o.WorkDir, state: &state{}}
	entries, how, err := c.packages(context.Background(), targets[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", name, how)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
		if e.Arch != "" && e.Arch != "amd64" {
			t.Errorf("%s is for %s", e.Path, e.Arch)
		}
	}
	for _, p := range install.RequiredPackages["debian"] {
		if !slices.Contains(names, p) {
			t.Errorf("no %s among %v", p, names)
		}
	}
	// With an empty status every dependency is there, down to the C library.
	if !slices.Contains(names, "libc6") {
		t.Errorf("dependencies missing: %v", names)
	}
	// A second run finds every package good and downloads none again.
	if _, how, err := c.packages(context.Background(), targets[0]); err != nil || !strings.Contains(how, "(0 downloaded") {
		t.Errorf("second run: %s, %v", how, err)
	}
	// The install phase reads name and version from the file name, as ReadBundleDir does.
	for _, e := range entries {
		if pe, ok := image.PackageEntry(filepath.Base(e.Path)); !ok || pe.Name != e.Name {
			t.Errorf("%s: file name does not give the package name", e.Path)
		}
	}
}
