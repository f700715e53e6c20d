package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Container images reach a node as archives that `ctr -n k8s.io images import` loads: an OCI
// image layout (oci-layout, index.json, blobs/sha256/...) packed in a tar. containerd names an
// imported image after the index entry's io.containerd.image.name annotation, falling back to
// org.opencontainers.image.ref.name when that is a full reference; both are set to the full
// reference so every importer gives the image the name the kubelet asks for.
//
// WriteImageArchive streams the tar itself from each image's manifest, config and compressed
// layers rather than writing a go-containerregistry layout directory and packing that: it needs
// no second copy of hundreds of megabytes on disk, and the entry order, headers and index.json
// bytes are this package's own, so equal inputs give equal archives whatever the library does
// with file times or index order.

// Annotations containerd reads when it imports an OCI archive.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

const (
	ociLayoutFile    = "oci-layout"
	ociIndexFile     = "index.json"
	ociLayoutVersion = "1.0.0"
	// dockerManifestFile is the index of a docker-archive (`docker save`).
	dockerManifestFile = "manifest.json"
	blobsDir           = "blobs/sha256"
)

// maxArchiveJSON bounds the index files ImageArchiveRefs reads into memory: real ones are a
// few kilobytes.
const maxArchiveJSON = 16 << 20

// RefImage is an image and the full reference it is known by ("registry.k8s.io/pause:3.10.2").
type RefImage struct {
	Ref   string
	Image v1.Image
}

// WriteImageArchive writes images as an OCI image-layout tarball that `ctr images import` loads
// under each Ref. A blob that several images share (a base layer) is stored once. The archive
// is written atomically, 0644 (like the bundle it goes into), and is byte-identical for equal
// images and Options.ModTime whatever the order of images.
func WriteImageArchive(path string, images []RefImage, opts Options) error {
	if err := writeImageArchive(path, images, opts); err != nil {
		return fmt.Errorf("writing image archive %s: %w", path, err)
	}
	return nil
}

// archiveBlob is one blob of the archive: bytes already in memory (manifests, configs) or a
// layer streamed from the image when the tar is written.
type archiveBlob struct {
	digest v1.Hash
	size   int64
	data   []byte
	layer  v1.Layer
	owner  string // the reference that first needed it, for errors
}

func writeImageArchive(dst string, images []RefImage, opts Options) error {
	if len(images) == 0 {
		return errors.New("no images given")
	}
	images = slices.Clone(images)
	slices.SortFunc(images, func(a, b RefImage) int { return strings.Compare(a.Ref, b.Ref) })
	blobs := map[v1.Hash]*archiveBlob{}
	addBlob := func(b *archiveBlob) error {
		if prev, ok := blobs[b.digest]; ok {
			if prev.size != b.size {
				return fmt.Errorf("blob %s is %d bytes in %s but %d bytes in %s", b.digest, prev.size, prev.owner, b.size, b.owner)
			}
			return nil
		}
		blobs[b.digest] = b
		return nil
	}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for i, ri := range images {
		if err := checkImageRef(ri.Ref); err != nil {
			return err
		}
		if i > 0 && images[i-1].Ref == ri.Ref {
			return fmt.Errorf("image %s given twice", ri.Ref)
		}
		if ri.Image == nil {
			return fmt.Errorf("image %s: no image given", ri.Ref)
		}
		desc, imgBlobs, err := imageBlobs(ri)
		if err != nil {
			return fmt.Errorf("image %s: %w", ri.Ref, err)
		}
		for _, b := range imgBlobs {
			if err := addBlob(b); err != nil {
				return err
			}
		}
		index.Manifests = append(index.Manifests, desc)
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	digests := make([]v1.Hash, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	slices.SortFunc(digests, func(a, b v1.Hash) int { return strings.Compare(a.String(), b.String()) })

	mtime := modTime(opts.ModTime)
	// stageTemp rather than internal/atomicfile, which takes the whole content in memory: an
	// archive is streamed, layer by layer, and is hundreds of megabytes.
	tmp, err := stageTemp(dst, func(f *os.File) error {
		tw := tar.NewWriter(f)
		if err := writeTarFile(tw, ociLayoutFile, []byte(`{"imageLayoutVersion":"`+ociLayoutVersion+`"}`), mtime); err != nil {
			return err
		}
		if err := writeTarFile(tw, ociIndexFile, indexJSON, mtime); err != nil {
			return err
		}
		for _, dir := range []string{"blobs/", blobsDir + "/"} {
			if err := tw.WriteHeader(tarHeader(dir, tar.TypeDir, 0o755, 0, mtime)); err != nil {
				return err
			}
		}
		for _, d := range digests {
			if err := writeBlob(tw, blobs[d], mtime); err != nil {
				return err
			}
		}
		return tw.Close()
	})
	if err != nil {
		return err
	}
	// Image archives are public content of the bundle, like every other file in it.
	return publishPublic(tmp, dst)
}

// imageBlobs returns the index entry for ri and the blobs its manifest lists. Layers are looked
// up by the digests the manifest names, so the archive holds exactly what the manifest promises.
func imageBlobs(ri RefImage) (v1.Descriptor, []*archiveBlob, error) {
	img := ri.Image
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("reading manifest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("reading media type: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("reading manifest: %w", err)
	}
	cfgRaw, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("reading config: %w", err)
	}
	if d := sha256Hash(cfgRaw); d != m.Config.Digest {
		return v1.Descriptor{}, nil, fmt.Errorf("config is %s but the manifest names %s", d, m.Config.Digest)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("reading config: %w", err)
	}
	manifestDigest := sha256Hash(raw)
	desc := v1.Descriptor{
		MediaType: mt,
		Size:      int64(len(raw)),
		Digest:    manifestDigest,
		Annotations: map[string]string{
			annotationImageName: ri.Ref,
			annotationRefName:   ri.Ref,
		},
	}
	// The platform lets `ctr images import --platform` pick the image without reading configs.
	if cfg.OS != "" && cfg.Architecture != "" {
		desc.Platform = &v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion}
	}
	blobs := []*archiveBlob{
		{digest: manifestDigest, size: int64(len(raw)), data: raw, owner: ri.Ref},
		{digest: m.Config.Digest, size: int64(len(cfgRaw)), data: cfgRaw, owner: ri.Ref},
	}
	for _, ld := range m.Layers {
		if ld.Digest.Algorithm != "sha256" {
			return v1.Descriptor{}, nil, fmt.Errorf("layer %s: only sha256 digests are supported", ld.Digest)
		}
		l, err := img.LayerByDigest(ld.Digest)
		if err != nil {
			return v1.Descriptor{}, nil, fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
		blobs = append(blobs, &archiveBlob{digest: ld.Digest, size: ld.Size, layer: l, owner: ri.Ref})
	}
	return desc, blobs, nil
}

// writeBlob writes one blob, checking a streamed layer against the size and digest the
// manifest gave for it: a layer that compresses differently on a second read would otherwise
// produce an archive containerd rejects only on the node.
func writeBlob(tw *tar.Writer, b *archiveBlob, mtime time.Time) error {
	name := blobsDir + "/" + b.digest.Hex
	if b.data != nil {
		return writeTarFile(tw, name, b.data, mtime)
	}
	rc, err := b.layer.Compressed()
	if err != nil {
		return fmt.Errorf("image %s: layer %s: %w", b.owner, b.digest, err)
	}
	defer rc.Close()
	if err := tw.WriteHeader(tarHeader(name, tar.TypeReg, 0o644, b.size, mtime)); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(rc, b.size))
	if err != nil {
		return fmt.Errorf("image %s: layer %s: %w", b.owner, b.digest, err)
	}
	if extra, _ := io.Copy(io.Discard, io.LimitReader(rc, 1)); n != b.size || extra != 0 {
		return fmt.Errorf("image %s: layer %s: content is not the %d bytes the manifest says", b.owner, b.digest, b.size)
	}
	if got := hashOf(h); got != b.digest {
		return fmt.Errorf("image %s: layer %s: content has digest %s", b.owner, b.digest, got)
	}
	return nil
}

func writeTarFile(tw *tar.Writer, name string, data []byte, mtime time.Time) error {
	if err := tw.WriteHeader(tarHeader(name, tar.TypeReg, 0o644, int64(len(data)), mtime)); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// tarHeader fixes everything a tar header records besides name, type, mode and size: owner
// root, no user or group names, one modification time, and the USTAR format (no PAX records
// with access times).
func tarHeader(name string, typ byte, mode, size int64, mtime time.Time) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Mode: mode, Size: size, ModTime: mtime, Format: tar.FormatUSTAR}
}

func sha256Hash(data []byte) v1.Hash {
	sum := sha256.Sum256(data)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// checkImageRef accepts only references containerd stores unchanged: registry, repository
// (with "library/" on docker.io) and a tag or digest all spelled out. A short name such as
// "pause:3.10" would be imported under that name, and the kubelet, which asks for the full
// one, would never find it.
func checkImageRef(ref string) error {
	if _, err := name.ParseReference(ref, name.StrictValidation); err != nil {
		return fmt.Errorf("image reference %q: %w; write it in full, such as registry.k8s.io/pause:3.10.2", ref, err)
	}
	norm, err := normalizeImageRef(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if norm != ref {
		return fmt.Errorf("image reference %q: write it as %q, the name containerd gives it", ref, norm)
	}
	return nil
}

// normalizeImageRef spells ref the way containerd names an image it imports from a
// docker-archive's RepoTags: "busybox" is "docker.io/library/busybox:latest".
func normalizeImageRef(ref string) (string, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return "", err
	}
	reg := r.Context().RegistryStr()
	if reg == name.DefaultRegistry { // go-containerregistry's "index.docker.io"
		reg = "docker.io"
	}
	repo := reg + "/" + r.Context().RepositoryStr()
	if d, ok := r.(name.Digest); ok {
		return repo + "@" + d.DigestStr(), nil
	}
	return repo + ":" + r.Identifier(), nil
}

// ImageArchiveRefs returns, sorted, the references `ctr images import` gives the images of an
// OCI archive (index.json annotations) or of a docker-archive (manifest.json RepoTags). Like
// containerd, it treats a tar with an oci-layout file as OCI and any other as docker-archive.
// An archive that names no image, or whose index lists a manifest it does not hold, is an
// error: importing it would not give the node the images a manifest entry promises.
func ImageArchiveRefs(path string) ([]string, error) {
	refs, err := imageArchiveRefs(path)
	if err != nil {
		return nil, fmt.Errorf("reading image archive %s: %w", path, err)
	}
	return refs, nil
}

func imageArchiveRefs(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var layout, index, manifest []byte
	blobs := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		var dst *[]byte
		switch p := path.Clean(hdr.Name); p {
		case ociLayoutFile:
			dst = &layout
		case ociIndexFile:
			dst = &index
		case dockerManifestFile:
			dst = &manifest
		default:
			blobs[p] = true
			continue
		}
		if hdr.Size > maxArchiveJSON {
			return nil, fmt.Errorf("%s is %d bytes, more than an image index ever needs", hdr.Name, hdr.Size)
		}
		if *dst, err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("reading %s: %w", hdr.Name, err)
		}
	}
	var refs []string
	switch {
	case layout != nil:
		if refs, err = ociArchiveRefs(layout, index, blobs); err != nil {
			return nil, err
		}
	case manifest != nil:
		if refs, err = dockerArchiveRefs(manifest); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("not an image archive: it has neither %s (OCI) nor %s (docker-archive)", ociLayoutFile, dockerManifestFile)
	}
	if len(refs) == 0 {
		return nil, errors.New("the archive names no image; `ctr images import` would import it under a made-up name")
	}
	slices.Sort(refs)
	return slices.Compact(refs), nil
}

func ociArchiveRefs(layout, index []byte, blobs map[string]bool) ([]string, error) {
	var l struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(layout, &l); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", ociLayoutFile, err)
	}
	if l.Version != ociLayoutVersion {
		return nil, fmt.Errorf("%s: image layout version %q, containerd imports only %q", ociLayoutFile, l.Version, ociLayoutVersion)
	}
	if index == nil {
		return nil, fmt.Errorf("an OCI image layout without %s", ociIndexFile)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(index))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", ociIndexFile, err)
	}
	var refs []string
	for _, d := range idx.Manifests {
		if !blobs[path.Join("blobs", d.Digest.Algorithm, d.Digest.Hex)] {
			return nil, fmt.Errorf("%s lists %s, which the archive does not hold", ociIndexFile, d.Digest)
		}
		// containerd's own order; a bare tag in ref.name would get a name made up at import.
		if n := d.Annotations[annotationImageName]; n != "" {
			refs = append(refs, n)
		} else if n := d.Annotations[annotationRefName]; strings.ContainsAny(n, "/:@") {
			refs = append(refs, n)
		}
	}
	return refs, nil
}

func dockerArchiveRefs(manifest []byte) ([]string, error) {
	var mfsts []struct {
		RepoTags []string
	}
	if err := json.Unmarshal(manifest, &mfsts); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", dockerManifestFile, err)
	}
	var refs []string
	for _, m := range mfsts {
		for _, t := range m.RepoTags {
			n, err := normalizeImageRef(t)
			if err != nil {
				return nil, fmt.Errorf("%s: RepoTag %q: %w", dockerManifestFile, t, err)
			}
			refs = append(refs, n)
		}
	}
	return refs, nil
}
