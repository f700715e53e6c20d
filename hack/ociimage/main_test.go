package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// writeBase writes a root file system tarball the way mmdebstrap does: "./" names, a device
// node, a hard link, a file capability and the build's own times.
func writeBase(t *testing.T, p string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin", ModTime: now},
		{Name: "./dev/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: now},
		{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./usr/bin/cp", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3, ModTime: now, Uname: "root", Gname: "root",
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "cap", "atime": "1"}, Format: tar.FormatPAX},
		{Name: "./usr/bin/install", Typeflag: tar.TypeLink, Linkname: "./usr/bin/cp", ModTime: now},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte("cp\n")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeSpec(t *testing.T, dir, out string) string {
	t.Helper()
	base := filepath.Join(dir, "rootfs.tar")
	writeBase(t, base)
	bin := filepath.Join(dir, "kube-proxy")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := spec{Created: 86400, Archives: []archiveSpec{{Path: out, Images: []imageSpec{
		{Ref: "registry.k8s.io/kube-proxy:v1.37.2", Base: base, Entrypoint: []string{"/usr/local/bin/kube-proxy"},
			Files: []fileSpec{{Src: bin, Dst: "/usr/local/bin/kube-proxy"}}},
		{Ref: "ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1", Base: base, Entrypoint: []string{"/flannel"},
			Files: []fileSpec{{Src: bin, Dst: "/flannel", Mode: "0700"}}},
	}}}}
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "images.tar")
	if err := run(writeSpec(t, dir, out), ""); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(filepath.Join(dir, "spec.json"), ""); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(first, again) {
		t.Error("two runs on the same inputs wrote different archives")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("work files left behind: %v", entries)
	}

	lp := filepath.Join(t.TempDir(), "layout")
	untar(t, out, lp)
	idx, err := layout.ImageIndexFromPath(lp)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var baseDigests []v1.Hash
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatalf("%s: %v", d.Annotations["io.containerd.image.name"], err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != "amd64" || !slices.Equal(cf.Config.Env, []string{imagePath}) ||
			!cf.Created.Equal(time.Unix(86400, 0)) || len(cf.Config.Entrypoint) != 1 {
			t.Errorf("config %+v", cf)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if len(layers) != 2 {
			t.Fatalf("%d layers, want the base and the binary", len(layers))
		}
		dg, _ := layers[0].Digest()
		baseDigests = append(baseDigests, dg)
		got := layerFiles(t, layers[0])
		want := []string{"bin -> usr/bin", "dev/ 755", "usr/ 755", "usr/bin/ 755", "usr/bin/cp 755 security.capability", "usr/bin/install => usr/bin/cp"}
		if !slices.Equal(got, want) {
			t.Errorf("base layer\n%q\nwant\n%q", got, want)
		}
		got = layerFiles(t, layers[1])
		if cf.Config.Entrypoint[0] == "/flannel" {
			want = []string{"flannel 700"}
		} else {
			want = []string{"usr/ 755", "usr/local/ 755", "usr/local/bin/ 755", "usr/local/bin/kube-proxy 755"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("binary layer\n%q\nwant\n%q", got, want)
		}
	}
	if len(baseDigests) != 2 || baseDigests[0] != baseDigests[1] {
		t.Errorf("base layers %v, want one shared", baseDigests)
	}
}

// layerFiles lists a layer's entries as "name mode [xattrs]", "link -> target" or
// "link => hard link target", checking that every time is the spec's and no owner name is set.
func layerFiles(t *testing.T, l v1.Layer) []string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(time.Unix(86400, 0)) || h.Uname != "" || h.Gname != "" || !h.AccessTime.IsZero() {
			t.Errorf("%s: mtime %s atime %s owner %q:%q", h.Name, h.ModTime, h.AccessTime, h.Uname, h.Gname)
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			out = append(out, h.Name+" -> "+h.Linkname)
		case tar.TypeLink:
			out = append(out, h.Name+" => "+h.Linkname)
		default:
			s := fmt.Sprintf("%s %o", h.Name, h.Mode)
			for k := range h.PAXRecords {
				if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
					s += " " + x
				}
			}
			out = append(out, s)
		}
	}
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadSpecRefuses(t *testing.T) {
	for name, tc := range map[string]struct{ json, want string }{
		"unknown field":  {`{"archives": [], "extra": 1}`, "unknown field"},
		"no archives":    {`{"archives": []}`, "no archives"},
		"relative path":  {`{"archives": [{"path": "a.tar", "images": [{"ref": "x", "base": "/b"}]}]}`, "absolute path"},
		"empty image":    {`{"archives": [{"path": "/a.tar", "images": [{"ref": "x"}]}]}`, "needs a base or files"},
		"relative dst":   {`{"archives": [{"path": "/a.tar", "images": [{"ref": "x", "files": [{"src": "/s", "dst": "pause"}]}]}]}`, "clean absolute"},
		"bad mode":       {`{"archives": [{"path": "/a.tar", "images": [{"ref": "x", "files": [{"src": "/s", "dst": "/p", "mode": "rwx"}]}]}]}`, "octal"},
		"negative epoch": {`{"created": -1, "archives": [{"path": "/a.tar", "images": [{"ref": "x", "base": "/b"}]}]}`, "before 1970"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "spec.json")
			if err := os.WriteFile(p, []byte(tc.json), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := readSpec(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
