package artifacts_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/artifactstest"
)

func TestBundleFetch(t *testing.T) {
	fakes := artifactstest.Release(t, "v1.37.2", "amd64")
	deb := artifactstest.Extra{Entry: artifacts.Entry{Name: "socat", Version: "1.7.4.4-2", Arch: "amd64", Kind: artifacts.KindDeb, OS: "debian-12"}, Data: []byte("deb")}

	tests := []struct {
		name     string
		edit     func(t *testing.T, dir string, m *artifacts.Manifest)
		artifact artifacts.Artifact
		wantErr  error
		wantMsg  string
	}{
		{name: "good", artifact: fakes[3].Artifact},
		{name: "wrong checksum", artifact: fakes[0].Artifact,
			edit: func(t *testing.T, dir string, m *artifacts.Manifest) {
				os.WriteFile(filepath.Join(dir, m.Artifacts[0].Path), []byte("corrupt"), 0o644)
			},
			wantErr: artifacts.ErrChecksum,
			wantMsg: "installing kubeadm v1.37.2 (linux/amd64) from /srv/bundle/kubeadm/kubeadm: sha256 mismatch: got "},
		{name: "listed but missing", artifact: fakes[1].Artifact,
			edit: func(t *testing.T, dir string, m *artifacts.Manifest) {
				os.Remove(filepath.Join(dir, m.Artifacts[1].Path))
			},
			wantErr: artifacts.ErrNotFound,
			wantMsg: "installing kubelet v1.37.2 (linux/amd64) from /srv/bundle/kubelet/kubelet: not found: listed in the manifest but missing from the bundle"},
		{name: "other version", artifact: artifacts.Artifact{Name: "kubeadm", Version: "v1.36.0", Arch: "amd64", Kind: artifacts.KindBinary},
			wantErr: artifacts.ErrNotFound,
			wantMsg: "installing kubeadm v1.36.0 (linux/amd64) from /srv/bundle/manifest.json: not found in the bundle (the manifest has kubeadm v1.37.2/amd64)"},
		{name: "other arch", artifact: artifacts.Artifact{Name: "runc", Version: "v1.5.2", Arch: "arm64", Kind: artifacts.KindBinary},
			wantErr: artifacts.ErrNotFound, wantMsg: "(the manifest has runc v1.5.2/amd64)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := host.Root(t.TempDir())
			dir := root.Path("/srv/bundle")
			m := artifactstest.WriteBundle(t, dir, "v1.37.2", fakes, deb)
			if tt.edit != nil {
				tt.edit(t, dir, m)
			}
			b, err := artifacts.OpenBundle(dir, "/srv/bundle")
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			_, sum, err := artifacts.Fetch(context.Background(), b, tt.artifact, out)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if want := artifactstest.SHA256(fakes[3].Data); sum != want {
					t.Errorf("sha256 %s, want %s", sum, want)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("got %v\nwant %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Errorf("left %d files behind", len(entries))
			}
		})
	}
}

func TestBundleLocalPath(t *testing.T) {
	root := host.Root(t.TempDir())
	dir := root.Path("/srv/bundle")
	deb := artifactstest.Extra{Entry: artifacts.Entry{Name: "socat", Version: "1.7.4.4-2", Arch: "amd64", Kind: artifacts.KindDeb, OS: "debian-12",
		Path: "packages/socat.deb"}, Data: []byte("deb")}
	artifactstest.WriteBundle(t, dir, "v1.37.2", nil, deb)
	b, err := artifacts.OpenBundle(dir, "/srv/bundle")
	if err != nil {
		t.Fatal(err)
	}
	debs := b.Files(artifacts.KindDeb)
	if len(debs) != 1 || len(b.Files(artifacts.KindRPM)) != 0 {
		t.Fatalf("Files(deb) = %v", debs)
	}
	p, err := b.LocalPath(debs[0])
	if err != nil || p != filepath.Join(dir, "packages", "socat.deb") {
		t.Fatalf("LocalPath = %q, %v", p, err)
	}
	os.WriteFile(p, []byte("changed"), 0o644)
	_, err = b.LocalPath(debs[0])
	if !errors.Is(err, artifacts.ErrChecksum) || !strings.HasPrefix(err.Error(), "installing deb socat 1.7.4.4-2 (amd64) from /srv/bundle/packages/socat.deb: sha256 mismatch") {
		t.Fatalf("got %v", err)
	}
}

func TestOpenBundleNotABundle(t *testing.T) {
	_, err := artifacts.OpenBundle(t.TempDir(), "/mnt/usb")
	if !errors.Is(err, artifacts.ErrNotFound) || !strings.Contains(err.Error(), "reading bundle manifest /mnt/usb/manifest.json") {
		t.Fatalf("got %v", err)
	}
}

// mountRunner plays the kernel for `mount`: it copies a prepared bundle to the mount point.
type mountRunner struct {
	*hosttest.Stub
	root   host.Root
	bundle func(dir string)
}

func (m mountRunner) Run(ctx context.Context, c host.Cmd) ([]byte, error) {
	out, err := m.Stub.Run(ctx, c)
	if err == nil && c.Name == "mount" {
		m.bundle(c.Args[len(c.Args)-1])
	}
	return out, err
}

func TestLocator(t *testing.T) {
	fakes := artifactstest.Release(t, "v1.37.2", "amd64")
	tests := []struct {
		name    string
		spec    string
		setup   func(t *testing.T, root host.Root, s *hosttest.Stub)
		wantDir string
		wantErr string
	}{
		{name: "directory", spec: "/srv/bundle", wantDir: "/srv/bundle",
			setup: func(t *testing.T, root host.Root, s *hosttest.Stub) {
				artifactstest.WriteBundle(t, root.Path("/srv/bundle"), "v1.37.2", fakes)
			}},
		{name: "volume label", spec: "label:KSBUNDLE", wantDir: artifacts.MountPoint,
			setup: func(t *testing.T, root host.Root, s *hosttest.Stub) {
				s.Register(`^blkid -t LABEL=KSBUNDLE -o device$`, "/dev/sr1\n", nil)
				s.Register(`^mount -o ro /dev/sr1 .*/run/ksboot/bundle$`, "", nil)
			}},
		{name: "volume appears late", spec: "label:KSBUNDLE", wantDir: artifacts.MountPoint,
			setup: func(t *testing.T, root host.Root, s *hosttest.Stub) {
				s.Register(`^blkid -t LABEL=KSBUNDLE -o device$`, "", errors.New("exit status 2"))
				s.Register(`^blkid -t LABEL=KSBUNDLE -o device$`, "/dev/sr1\n", nil)
				s.Register(`^mount -o ro /dev/sr1 .*/run/ksboot/bundle$`, "", nil)
			}},
		{name: "ISO file", spec: "/var/lib/bundle.iso", wantDir: artifacts.MountPoint,
			setup: func(t *testing.T, root host.Root, s *hosttest.Stub) {
				root.WriteFile("/var/lib/bundle.iso", []byte("iso"), 0o644)
				s.Register(`^mount -o ro,loop .*/var/lib/bundle.iso .*/run/ksboot/bundle$`, "", nil)
			}},
		{name: "already mounted by an earlier run", spec: "label:KSBUNDLE", wantDir: artifacts.MountPoint,
			setup: func(t *testing.T, root host.Root, s *hosttest.Stub) {
				artifactstest.WriteBundle(t, root.Path(artifacts.MountPoint), "v1.37.2", fakes)
			}},
		{name: "no such volume", spec: "label:KSBUNDLE",
			setup: func(t *testing.T, root host.Root, s *hosttest.Stub) {
				s.Allow(`^blkid -t LABEL=KSBUNDLE -o device$`, "")
			},
			wantErr: "finding the bundle: no volume labelled KSBUNDLE after 20ms (blkid -t LABEL=KSBUNDLE): not found"},
		{name: "two volumes", spec: "label:KSBUNDLE",
			setup: func(t *testing.T, root host.Root, s *hosttest.Stub) {
				s.Register(`^blkid`, "/dev/sr2\n/dev/sr1\n", nil)
			},
			wantErr: "2 volumes are labelled KSBUNDLE (/dev/sr1, /dev/sr2)"},
		{name: "relative path", spec: "bundle", wantErr: `spec.artifacts.bundle "bundle": want an absolute path or label:<LABEL>`},
		{name: "missing path", spec: "/nowhere", wantErr: "opening bundle /nowhere: stat "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := host.Root(t.TempDir())
			stub := hosttest.NewStub(t)
			if tt.setup != nil {
				tt.setup(t, root, stub)
			}
			run := mountRunner{Stub: stub, root: root, bundle: func(dir string) { artifactstest.WriteBundle(t, dir, "v1.37.2", fakes) }}
			l := artifacts.Locator{Root: root, Exec: run, Wait: 20 * time.Millisecond, Poll: 5 * time.Millisecond}
			b, err := l.Open(context.Background(), tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.NodeDir != tt.wantDir || len(b.Manifest.Artifacts) != len(fakes) {
				t.Errorf("bundle at %s with %d artifacts, want %s with %d", b.NodeDir, len(b.Manifest.Artifacts), tt.wantDir, len(fakes))
			}
		})
	}
}
