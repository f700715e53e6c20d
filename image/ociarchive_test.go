package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// testLayer is a gzipped layer holding files, with fixed headers so it has one digest.
func testLayer(t testing.TB, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o755, Size: int64(len(files[n])), ModTime: testTime, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage is an OCI linux/amd64 image of layers.
func testImage(t testing.TB, entrypoint string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{entrypoint}
	cf.Created = v1.Time{Time: testTime}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// testImages are two images sharing a base layer, as kube-proxy and flannel share Debian.
func testImages(t testing.TB) (base v1.Layer, images []RefImage) {
	base = testLayer(t, map[string]string{"bin/sh": "base system"})
	return base, []RefImage{
		{Ref: "registry.k8s.io/kube-proxy:v1.37.2", Image: testImage(t, "/usr/local/bin/kube-proxy", base, testLayer(t, map[string]string{"usr/local/bin/kube-proxy": "proxy"}))},
		{Ref: "ghcr.io/flannel-io/flannel:v0.27.4", Image: testImage(t, "/opt/bin/flanneld", base, testLayer(t, map[string]string{"opt/bin/flanneld": "flannel"}))},
	}
}

// tarEntries lists an archive's headers in order.
func tarEntries(t testing.TB, p string) []*tar.Header {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdrs []*tar.Header
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, hdr)
	}
}

// untar unpacks an archive's regular files and directories into dir.
func untar(t testing.TB, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
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

func TestImageArchiveRoundTrip(t *testing.T) {
	_, images := testImages(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "images.tar")
	if err := WriteImageArchive(p, images, Options{ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	checkMode(t, p, 0o644)
	if names := dirNames(t, dir); !slices.Equal(names, []string{"images.tar"}) {
		t.Errorf("directory holds %v, want only the archive", names)
	}
	refs, err := ImageArchiveRefs(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ghcr.io/flannel-io/flannel:v0.27.4", "registry.k8s.io/kube-proxy:v1.37.2"}
	if !slices.Equal(refs, want) {
		t.Errorf("refs %v, want %v", refs, want)
	}
	for _, h := range tarEntries(t, p) {
		if !h.ModTime.Equal(testTime) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %s owner %d:%d (%q:%q), want %s and 0:0", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname, testTime)
		}
	}

	// An independent reader (go-containerregistry's layout) finds every image, intact, under
	// both annotations containerd reads.
	lp := filepath.Join(t.TempDir(), "layout")
	untar(t, p, lp)
	idx, err := layout.ImageIndexFromPath(lp)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != len(images) {
		t.Fatalf("index lists %d manifests, want %d", len(im.Manifests), len(images))
	}
	for _, d := range im.Manifests {
		ref := d.Annotations[annotationImageName]
		if d.Annotations[annotationRefName] != ref {
			t.Errorf("%s: %s is %q", ref, annotationRefName, d.Annotations[annotationRefName])
		}
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != "amd64" {
			t.Errorf("%s: platform %v, want linux/amd64", ref, d.Platform)
		}
		i := slices.IndexFunc(images, func(ri RefImage) bool { return ri.Ref == ref })
		if i < 0 {
			t.Errorf("unexpected image %q in the index", ref)
			continue
		}
		wantDigest, _ := images[i].Image.Digest()
		if d.Digest != wantDigest {
			t.Errorf("%s: digest %s, want %s", ref, d.Digest, wantDigest)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
}

func TestImageArchiveSharesBlobs(t *testing.T) {
	base, images := testImages(t)
	// The same image under a second name costs one index entry and no blob.
	images = append(images, RefImage{Ref: "registry.k8s.io/kube-proxy:latest", Image: images[0].Image})
	p := filepath.Join(t.TempDir(), "images.tar")
	if err := WriteImageArchive(p, images, Options{ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	bd, err := base.Digest()
	if err != nil {
		t.Fatal(err)
	}
	var blobs []string
	baseCount := 0
	for _, h := range tarEntries(t, p) {
		if h.Typeflag == tar.TypeReg && strings.HasPrefix(h.Name, "blobs/") {
			blobs = append(blobs, h.Name)
		}
		if h.Name == "blobs/sha256/"+bd.Hex {
			baseCount++
		}
	}
	if baseCount != 1 {
		t.Errorf("base layer stored %d times, want once", baseCount)
	}
	// Two manifests, two configs, the base and one layer per image.
	if len(blobs) != 7 {
		t.Errorf("%d blobs, want 7: %v", len(blobs), blobs)
	}
	refs, err := ImageArchiveRefs(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 3 {
		t.Errorf("refs %v, want three", refs)
	}
}

func TestImageArchiveReproducible(t *testing.T) {
	_, images := testImages(t)
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar"), filepath.Join(dir, "c.tar")
	if err := WriteImageArchive(a, images, Options{ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	// The caller's order does not matter, and the images are rebuilt from scratch.
	_, again := testImages(t)
	slices.Reverse(again)
	if err := WriteImageArchive(b, again, Options{ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustRead(t, a), mustRead(t, b)) {
		t.Error("equal images give different archives")
	}
	if err := WriteImageArchive(c, images, Options{ModTime: testTime.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(mustRead(t, a), mustRead(t, c)) {
		t.Error("Options.ModTime is not recorded in the archive")
	}
}

func TestWriteImageArchiveRefuses(t *testing.T) {
	_, images := testImages(t)
	img := images[0].Image
	for _, tc := range []struct {
		name    string
		images  []RefImage
		wantErr string
	}{
		{name: "none", wantErr: "no images"},
		{name: "twice", images: []RefImage{{"registry.k8s.io/pause:3.10.2", img}, {"registry.k8s.io/pause:3.10.2", img}}, wantErr: "given twice"},
		{name: "short name", images: []RefImage{{"pause:3.10.2", img}}, wantErr: "write it in full"},
		{name: "no tag", images: []RefImage{{"registry.k8s.io/pause", img}}, wantErr: "write it in full"},
		{name: "docker hub alias", images: []RefImage{{"index.docker.io/library/busybox:1", img}}, wantErr: `"docker.io/library/busybox:1"`},
		{name: "nil image", images: []RefImage{{"registry.k8s.io/pause:3.10.2", nil}}, wantErr: "no image given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "images.tar")
			err := WriteImageArchive(p, tc.images, Options{ModTime: testTime})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v, want one naming %s and saying %q", err, p, tc.wantErr)
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("left behind %v", names)
			}
		})
	}
}

// writeTar writes a tar of the given files, in order.
func writeTar(t testing.TB, p string, files ...[2]string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

const (
	testLayout   = `{"imageLayoutVersion":"1.0.0"}`
	testBlobHex  = "0000000000000000000000000000000000000000000000000000000000000000"
	testBlobName = "blobs/sha256/" + testBlobHex
)

func testIndex(annotations string) string {
	return `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":2,"digest":"sha256:` + testBlobHex + `","annotations":` + annotations + `}]}`
}

func TestImageArchiveRefsFormats(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files [][2]string
		want  []string
	}{
		{
			name:  "docker-archive",
			files: [][2]string{{"manifest.json", `[{"Config":"c.json","RepoTags":["busybox:1","quay.io/x/y:2"],"Layers":[]},{"RepoTags":["docker.io/library/busybox:1"]}]`}},
			want:  []string{"docker.io/library/busybox:1", "quay.io/x/y:2"},
		},
		{
			name:  "OCI with only a full ref.name",
			files: [][2]string{{"./oci-layout", testLayout}, {"./index.json", testIndex(`{"org.opencontainers.image.ref.name":"registry.k8s.io/pause:3.10.2"}`)}, {testBlobName, "{}"}},
			want:  []string{"registry.k8s.io/pause:3.10.2"},
		},
		{
			// docker save writes both; containerd reads the OCI index then.
			name: "OCI and docker-archive",
			files: [][2]string{{"manifest.json", `[{"RepoTags":["busybox:1"]}]`}, {"oci-layout", testLayout}, {testBlobName, "{}"},
				{"index.json", testIndex(`{"io.containerd.image.name":"docker.io/library/busybox:1","org.opencontainers.image.ref.name":"1"}`)}},
			want: []string{"docker.io/library/busybox:1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "a.tar")
			writeTar(t, p, tc.files...)
			got, err := ImageArchiveRefs(p)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("refs %v, want %v", got, tc.want)
			}
		})
	}
}

func TestImageArchiveRefsRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   [][2]string // nil: no file at all
		raw     string      // instead of a tar
		wantErr string
	}{
		{name: "absent", wantErr: "no such file"},
		{name: "not a tar", raw: strings.Repeat("this is not a tar archive\n", 40), wantErr: "not a tar archive"},
		{name: "plain tar", files: [][2]string{{"etc/hostname", "node1\n"}}, wantErr: "not an image archive"},
		{name: "no index", files: [][2]string{{"oci-layout", testLayout}, {testBlobName, "{}"}}, wantErr: "without index.json"},
		{name: "corrupt index", files: [][2]string{{"oci-layout", testLayout}, {"index.json", `{"manifests":[`}}, wantErr: "parsing index.json"},
		{name: "corrupt layout", files: [][2]string{{"oci-layout", `{`}, {"index.json", testIndex(`{}`)}}, wantErr: "parsing oci-layout"},
		{name: "layout version", files: [][2]string{{"oci-layout", `{"imageLayoutVersion":"2.0.0"}`}, {"index.json", testIndex(`{}`)}}, wantErr: `"2.0.0"`},
		{name: "missing manifest", files: [][2]string{{"oci-layout", testLayout}, {"index.json", testIndex(`{"io.containerd.image.name":"registry.k8s.io/pause:3.10.2"}`)}}, wantErr: "does not hold"},
		{name: "unnamed", files: [][2]string{{"oci-layout", testLayout}, {"index.json", testIndex(`{"org.opencontainers.image.ref.name":"3.10.2"}`)}, {testBlobName, "{}"}}, wantErr: "names no image"},
		{name: "corrupt docker manifest", files: [][2]string{{"manifest.json", `{"RepoTags":1}`}}, wantErr: "parsing manifest.json"},
		{name: "bad RepoTag", files: [][2]string{{"manifest.json", `[{"RepoTags":["Not A Name"]}]`}}, wantErr: "Not A Name"},
		{name: "no RepoTags", files: [][2]string{{"manifest.json", `[{"Config":"c.json"}]`}}, wantErr: "names no image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "images.tar")
			switch {
			case tc.raw != "":
				if err := os.WriteFile(p, []byte(tc.raw), 0o644); err != nil {
					t.Fatal(err)
				}
			case tc.files != nil:
				writeTar(t, p, tc.files...)
			}
			refs, err := ImageArchiveRefs(p)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
				t.Fatalf("refs %v, error %v; want an error naming %s and saying %q", refs, err, p, tc.wantErr)
			}
		})
	}
}

func FuzzImageArchiveRefs(f *testing.F) {
	_, images := testImages(f)
	dir := f.TempDir()
	p := filepath.Join(dir, "seed.tar")
	if err := WriteImageArchive(p, images, Options{ModTime: testTime}); err != nil {
		f.Fatal(err)
	}
	f.Add(mustRead(f, p))
	writeTar(f, p, [2]string{"manifest.json", `[{"RepoTags":["busybox:1"]}]`})
	f.Add(mustRead(f, p))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "a.tar")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		refs, err := ImageArchiveRefs(p)
		if err != nil {
			return
		}
		if len(refs) == 0 || !slices.IsSorted(refs) || len(slices.Compact(slices.Clone(refs))) != len(refs) {
			t.Errorf("refs %q: want a sorted, non-empty list without duplicates", refs)
		}
	})
}
