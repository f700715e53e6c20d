// Command ociimage assembles container images from files on this machine and writes them as OCI
// image archives for `ctr images import` (image.WriteImageArchive). hack/build-images.sh runs
// it with the binaries it built from Go modules and a Debian root file system from
// mmdebstrap, to make the kubeadm and Flannel images of the offline test bundle: no image can be
// pulled on the machines this project is built on. Not product code.
//
// Usage:
//
//	go run ./hack/ociimage -spec SPEC.json [-work DIR]
//
// SPEC.json (unknown fields are errors):
//
//	{"created": 0,
//	 "archives": [{"path": "/abs/kubernetes-amd64.tar", "images": [
//	   {"ref": "registry.k8s.io/kube-proxy:v1.37.2", "arch": "amd64",
//	    "base": "/abs/rootfs.tar",
//	    "files": [{"src": "/abs/kube-proxy", "dst": "/usr/local/bin/kube-proxy"}],
//	    "entrypoint": ["/usr/local/bin/kube-proxy"]}]}]}
//
// created is the image creation time and every file time, in seconds since 1970
// (SOURCE_DATE_EPOCH): equal inputs give byte-equal archives. Each image gets one layer for its
// base (a root file system tarball, optional) and one per file, so images sharing a base store
// it once per archive. Every image config sets PATH, because kubeadm's static pods start their
// binaries by name ("command: [kube-apiserver, ...]").
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ksboot/ksboot/image"
)

// imagePath is the PATH of every image: Debian's default for root.
const imagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type spec struct {
	Created  int64         `json:"created"`
	Archives []archiveSpec `json:"archives"`
}

type archiveSpec struct {
	Path   string      `json:"path"`
	Images []imageSpec `json:"images"`
}

type imageSpec struct {
	Ref  string `json:"ref"`
	Arch string `json:"arch"`
	// Base is a root file system tarball (as mmdebstrap writes it) that becomes the first layer.
	Base       string     `json:"base,omitempty"`
	Files      []fileSpec `json:"files"`
	Entrypoint []string   `json:"entrypoint,omitempty"`
	Cmd        []string   `json:"cmd,omitempty"`
}

type fileSpec struct {
	Src string `json:"src"`
	// Dst is the absolute path in the image.
	Dst string `json:"dst"`
	// Mode is octal, "0755" when empty (the files are binaries).
	Mode string `json:"mode,omitempty"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("ociimage: ")
	specPath := flag.String("spec", "", "JSON file saying which archives and images to write (see the package documentation)")
	work := flag.String("work", "", "directory for compressed layers; default: a temporary directory next to the first archive, removed at the end")
	flag.Parse()
	if *specPath == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*specPath, *work); err != nil {
		log.Fatal(err)
	}
}

func run(specPath, work string) error {
	s, err := readSpec(specPath)
	if err != nil {
		return err
	}
	created := time.Unix(s.Created, 0).UTC()
	if work == "" {
		// Next to the output rather than in /tmp: layers of binaries are hundreds of MiB.
		if work, err = os.MkdirTemp(filepath.Dir(s.Archives[0].Path), ".ociimage-work-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	layers, err := buildLayers(s, work, created)
	if err != nil {
		return err
	}
	for _, a := range s.Archives {
		start := time.Now()
		var refImages []image.RefImage
		var refs []string
		for _, is := range a.Images {
			img, err := assemble(is, layers, created)
			if err != nil {
				return fmt.Errorf("image %s: %w", is.Ref, err)
			}
			refImages = append(refImages, image.RefImage{Ref: is.Ref, Image: img})
			refs = append(refs, is.Ref)
		}
		if err := image.WriteImageArchive(a.Path, refImages, image.Options{ModTime: created}); err != nil {
			return err
		}
		// Read back what `ctr images import` will name, as the bundle's manifest will.
		got, err := image.ImageArchiveRefs(a.Path)
		if err != nil {
			return err
		}
		slices.Sort(refs)
		if !slices.Equal(got, refs) {
			return fmt.Errorf("%s holds %v, want %v", a.Path, got, refs)
		}
		fi, err := os.Stat(a.Path)
		if err != nil {
			return err
		}
		log.Printf("wrote %s (%d images, %.1f MiB) in %s", a.Path, len(refs), float64(fi.Size())/(1<<20), since(start))
	}
	return nil
}

func readSpec(p string) (*spec, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("reading spec %s: %w", p, err)
	}
	if len(s.Archives) == 0 {
		return nil, fmt.Errorf("spec %s: no archives", p)
	}
	if s.Created < 0 {
		return nil, fmt.Errorf("spec %s: created %d is before 1970", p, s.Created)
	}
	for i, a := range s.Archives {
		at := fmt.Sprintf("spec %s: archives[%d]", p, i)
		if !filepath.IsAbs(a.Path) || len(a.Images) == 0 {
			return nil, fmt.Errorf("%s: want an absolute path and at least one image", at)
		}
		for j := range a.Images {
			is := &s.Archives[i].Images[j]
			at := fmt.Sprintf("%s.images[%d] (%s)", at, j, is.Ref)
			if is.Arch == "" {
				is.Arch = "amd64"
			}
			if is.Base == "" && len(is.Files) == 0 {
				return nil, fmt.Errorf("%s: an image needs a base or files", at)
			}
			for k := range is.Files {
				f := &is.Files[k]
				if !path.IsAbs(f.Dst) || path.Clean(f.Dst) != f.Dst || f.Dst == "/" {
					return nil, fmt.Errorf("%s: files[%d]: dst %q must be a clean absolute file path", at, k, f.Dst)
				}
				if f.Mode == "" {
					f.Mode = "0755"
				}
				if _, err := parseMode(f.Mode); err != nil {
					return nil, fmt.Errorf("%s: files[%d]: %w", at, k, err)
				}
			}
		}
	}
	return &s, nil
}

func parseMode(s string) (int64, error) {
	var m int64
	if _, err := fmt.Sscanf(s, "%o", &m); err != nil || m&^0o7777 != 0 {
		return 0, fmt.Errorf("mode %q: want octal permission bits such as 0755", s)
	}
	return m, nil
}

// layerKey names a layer's source: a base tarball, or one file at a path with a mode.
type layerKey struct{ base, src, dst, mode string }

func (k layerKey) String() string {
	if k.base != "" {
		return "base " + k.base
	}
	return fmt.Sprintf("%s as %s (%s)", k.src, k.dst, k.mode)
}

func imageLayerKeys(is imageSpec) []layerKey {
	var keys []layerKey
	if is.Base != "" {
		keys = append(keys, layerKey{base: is.Base})
	}
	for _, f := range is.Files {
		keys = append(keys, layerKey{src: f.Src, dst: f.Dst, mode: f.Mode})
	}
	return keys
}

// buildLayers compresses every distinct layer once, on all CPUs: gzip of a few hundred MiB of
// binaries is most of the run time.
func buildLayers(s *spec, work string, created time.Time) (map[layerKey]*fileLayer, error) {
	var keys []layerKey
	for _, a := range s.Archives {
		for _, is := range a.Images {
			for _, k := range imageLayerKeys(is) {
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
	}
	layers := make(map[layerKey]*fileLayer, len(keys))
	var mu sync.Mutex
	var errs []error
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.NumCPU(), len(keys)) {
		wg.Go(func() {
			for i := range next {
				start := time.Now()
				l, err := buildLayer(keys[i], filepath.Join(work, fmt.Sprintf("layer-%d.tar.gz", i)), created)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("layer %s: %w", keys[i], err))
				} else {
					layers[keys[i]] = l
					log.Printf("layer %s: %.1f MiB compressed, in %s", keys[i], float64(l.size)/(1<<20), since(start))
				}
				mu.Unlock()
			}
		})
	}
	for i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()
	return layers, errors.Join(errs...)
}

func buildLayer(k layerKey, out string, created time.Time) (*fileLayer, error) {
	write := func(tw *tar.Writer) error { return writeFileLayer(tw, k, created) }
	if k.base != "" {
		write = func(tw *tar.Writer) error { return copyBase(tw, k.base, created) }
	}
	return writeLayer(out, write)
}

// writeFileLayer writes one file with its parent directories (root-owned, 0755), as a
// Dockerfile COPY would.
func writeFileLayer(tw *tar.Writer, k layerKey, created time.Time) error {
	mode, err := parseMode(k.mode)
	if err != nil {
		return err
	}
	f, err := os.Open(k.src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", k.src)
	}
	rel := strings.TrimPrefix(k.dst, "/")
	var dirs []string
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		dirs = append(dirs, d)
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: created}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: mode, Size: fi.Size(), ModTime: created}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// copyBase rewrites a root file system tarball as a layer. Names lose mmdebstrap's "./"
// prefix, every time becomes created and user and group names go (the numeric owners stay),
// so the layer depends only on the files. Device nodes and FIFOs are dropped: the runtime
// mounts /dev, and creating nodes fails in user namespaces. Extended attributes (file
// capabilities) are kept.
func copyBase(tw *tar.Writer, base string, created time.Time) error {
	f, err := os.Open(base)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	dropped := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", base, err)
		}
		switch hdr.Typeflag {
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			dropped++
			continue
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
		default:
			return fmt.Errorf("%s: %s has tar type %q, which a layer does not need", base, hdr.Name, hdr.Typeflag)
		}
		name := cleanName(hdr.Name)
		if name == "" {
			continue // the root directory itself
		}
		out := &tar.Header{
			Typeflag: hdr.Typeflag, Name: name, Linkname: hdr.Linkname, Size: hdr.Size,
			Mode: hdr.Mode, Uid: hdr.Uid, Gid: hdr.Gid, ModTime: created,
		}
		if hdr.Typeflag == tar.TypeDir {
			out.Name += "/"
		}
		if hdr.Typeflag == tar.TypeLink {
			out.Linkname = cleanName(hdr.Linkname)
		}
		for k, v := range hdr.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				if out.PAXRecords == nil {
					out.PAXRecords = map[string]string{}
				}
				out.PAXRecords[k] = v
			}
		}
		if out.PAXRecords != nil {
			out.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		}
	}
	if dropped > 0 {
		log.Printf("base %s: left out %d device nodes and FIFOs", base, dropped)
	}
	return nil
}

func cleanName(n string) string {
	n = path.Clean("/" + n)
	return strings.TrimPrefix(n, "/")
}

// writeLayer writes a gzipped layer to out, hashing the tar (the diff ID) and the gzip stream
// (the digest) as it goes, so the layer is read only once more: when the archive is written.
func writeLayer(out string, write func(tw *tar.Writer) error) (l *fileLayer, err error) {
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	digest, diffID := sha256.New(), sha256.New()
	counter := &countWriter{}
	gz, err := gzip.NewWriterLevel(io.MultiWriter(f, digest, counter), gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(io.MultiWriter(gz, diffID))
	if err := write(tw); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return &fileLayer{path: out, digest: hashOf(digest), diffID: hashOf(diffID), size: counter.n}, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// fileLayer is a gzipped layer on disk whose digests are known. It implements v1.Layer
// directly: go-containerregistry's tarball layers would recompress (or at least re-hash) the
// data on every read.
type fileLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return types.OCILayer, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return gunzip(l.path) }

func gunzip(p string) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

// assemble makes an OCI image of the spec's layers and config.
func assemble(is imageSpec, layers map[layerKey]*fileLayer, created time.Time) (v1.Image, error) {
	img := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
	var adds []mutate.Addendum
	for _, k := range imageLayerKeys(is) {
		by := "ksboot hack/ociimage: root file system " + filepath.Base(k.base)
		if k.base == "" {
			by = fmt.Sprintf("ksboot hack/ociimage: COPY %s %s", filepath.Base(k.src), k.dst)
		}
		adds = append(adds, mutate.Addendum{Layer: layers[k], MediaType: types.OCILayer,
			History: v1.History{Created: v1.Time{Time: created}, CreatedBy: by}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", is.Arch
	cf.Created = v1.Time{Time: created}
	cf.Config.Env = []string{imagePath}
	cf.Config.Entrypoint = is.Entrypoint
	cf.Config.Cmd = is.Cmd
	return mutate.ConfigFile(img, cf)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }
