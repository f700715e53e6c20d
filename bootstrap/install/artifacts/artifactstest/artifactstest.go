// Package artifactstest makes fake releases for tests: small stand-ins for every component,
// laid out and checksummed as upstream publishes them, served by a real HTTP server on
// 127.0.0.1 or written as an offline bundle with its manifest.
package artifactstest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
)

// Fake is one component of a fake release.
type Fake struct {
	artifacts.Artifact
	// Data is the published file: an executable script or a .tar.gz.
	Data []byte
}

// TarEntry is one member of a fake tarball.
type TarEntry struct {
	Name string
	Mode int64
	Data string
	Dir  bool
}

// TarGz builds a gzipped tarball.
func TarGz(t testing.TB, entries ...TarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: e.Mode, Size: int64(len(e.Data)), Typeflag: tar.TypeReg}
		if e.Dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if !e.Dir {
			if _, err := tw.Write([]byte(e.Data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func script(name, version string) string {
	return fmt.Sprintf("#!/bin/sh\necho '%s %s'\n", name, version)
}

// Release is a fake of every component artifacts.Components lists, shaped like upstream's
// (containerd's tarball has bin/…, the CNI plugins' has ./bridge …).
func Release(t testing.TB, kubernetesVersion, arch string) []Fake {
	t.Helper()
	var out []Fake
	for _, a := range artifacts.Components(kubernetesVersion, arch) {
		f := Fake{Artifact: a}
		switch a.Name {
		case artifacts.Containerd:
			f.Data = TarGz(t,
				TarEntry{Name: "bin/", Dir: true, Mode: 0o755},
				TarEntry{Name: "bin/containerd", Mode: 0o755, Data: script("containerd", a.Version)},
				TarEntry{Name: "bin/containerd-shim-runc-v2", Mode: 0o755, Data: script("shim", a.Version)},
				TarEntry{Name: "bin/containerd-stress", Mode: 0o755, Data: script("stress", a.Version)},
				TarEntry{Name: "bin/ctr", Mode: 0o755, Data: script("ctr", a.Version)})
		case artifacts.Crictl:
			f.Data = TarGz(t, TarEntry{Name: "crictl", Mode: 0o755, Data: script("crictl", a.Version)})
		case artifacts.CNIPlugins:
			entries := []TarEntry{{Name: "./", Dir: true, Mode: 0o755}}
			for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
				entries = append(entries, TarEntry{Name: "./" + p, Mode: 0o755, Data: script(p, a.Version)})
			}
			entries = append(entries, TarEntry{Name: "./LICENSE", Mode: 0o644, Data: "Apache-2.0\n"})
			f.Data = TarGz(t, entries...)
		default:
			f.Data = []byte(script(a.Name, a.Version))
		}
		out = append(out, f)
	}
	return out
}

// SHA256 is the lowercase hex digest of data.
func SHA256(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// MirrorFiles lays a release out as the upstream sites publish it: URL path → content, with
// each project's checksum file in its own format (a bare digest for Kubernetes and crictl,
// sha256sum lines for containerd and the CNI plugins, one file for all runc assets).
func MirrorFiles(t testing.TB, fakes []Fake) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, f := range fakes {
		file, sums, err := artifacts.UpstreamURLs(f.Artifact)
		if err != nil {
			t.Fatal(err)
		}
		fp, sp := urlPath(t, file), urlPath(t, sums)
		files[fp] = f.Data
		sum := SHA256(f.Data)
		switch f.Name {
		case artifacts.Kubeadm, artifacts.Kubelet, artifacts.Kubectl, artifacts.Crictl:
			files[sp] = []byte(sum + "\n")
		case artifacts.Runc:
			other := SHA256([]byte("another asset"))
			files[sp] = fmt.Appendf(nil, "%s  libseccomp-2.5.5.tar.gz\n%s  runc.%s\n", other, sum, f.Arch)
		default:
			files[sp] = fmt.Appendf(nil, "%s  %s\n", sum, path.Base(fp))
		}
	}
	return files
}

func urlPath(t testing.TB, u string) string {
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Path
}

// Hits counts requests by path.
type Hits struct {
	mu sync.Mutex
	m  map[string]int
}

// Total is the number of requests served.
func (h *Hits) Total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.m {
		n += c
	}
	return n
}

// Serve serves files (URL path → content; anything else is 404) on 127.0.0.1 until the test
// ends.
func Serve(t testing.TB, files map[string][]byte) (base string, hits *Hits) {
	t.Helper()
	hits = &Hits{m: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.mu.Lock()
		hits.m[r.URL.Path]++
		hits.mu.Unlock()
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

// BundlePath is where WriteBundle puts an artifact inside the bundle.
func BundlePath(a artifacts.Artifact) string {
	file, _, err := artifacts.UpstreamURLs(a)
	if err != nil {
		return path.Join(a.Name, a.Version)
	}
	return path.Join(a.Name, path.Base(file))
}

// Extra is a bundle file that is not a component: a package or an image archive.
type Extra struct {
	artifacts.Entry // Path and SHA256 are filled in when empty
	Data            []byte
}

// WriteBundle writes the fakes and extras into dir with a manifest.json, and returns the
// manifest.
func WriteBundle(t testing.TB, dir, kubernetesVersion string, fakes []Fake, extras ...Extra) *artifacts.Manifest {
	t.Helper()
	m := &artifacts.Manifest{FormatVersion: artifacts.ManifestFormatVersion, KubernetesVersion: kubernetesVersion}
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range fakes {
		rel := BundlePath(f.Artifact)
		write(rel, f.Data)
		m.Artifacts = append(m.Artifacts, artifacts.Entry{Name: f.Name, Version: f.Version, Arch: f.Arch, Kind: f.Kind, Path: rel, SHA256: SHA256(f.Data)})
	}
	for _, x := range extras {
		e := x.Entry
		if e.Path == "" {
			e.Path = strings.Join([]string{string(e.Kind), e.Name + "-" + e.Version}, "/")
		}
		if e.SHA256 == "" {
			e.SHA256 = SHA256(x.Data)
		}
		write(e.Path, x.Data)
		m.Artifacts = append(m.Artifacts, e)
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	write(artifacts.ManifestFile, data)
	return m
}
