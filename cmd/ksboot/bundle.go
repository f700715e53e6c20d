package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/image"
	"github.com/ksboot/ksboot/internal/atomicfile"
)

type bundleOptions struct {
	file    string
	output  string
	arches  []string
	fromDir string
	workDir string
	k8s     string
}

func newBundleCmd(s *streams) *cobra.Command {
	o := &bundleOptions{}
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Build the offline bundle ISO (label KSBUNDLE) that nodes install from",
		Long: `Build an offline bundle: an ISO9660 image labelled KSBUNDLE holding manifest.json and the
files it lists (kubeadm, kubelet, kubectl, containerd, runc, crictl, CNI plugins, and OS packages
or image archives when given). Attach it to each machine as a second CD-ROM and set
spec.artifacts.bundle: label:KSBUNDLE in the cluster file; nodes then install without network.

Online (-f): the cluster's components for each --arch are downloaded from the cluster's
spec.artifacts.mirror (or zone: cn mirrors, or upstream), each checked against its published
sha256, into --work-dir; a file already there with the right sha256 is not downloaded again, so
an interrupted run resumes. The work directory is itself a valid bundle directory. Online mode
fetches binaries and release tarballs only: OS packages, image archives and charts are not
downloaded yet; put them in a directory with a manifest and use --from-dir.

Offline (--from-dir): the bundle is packed from a directory that holds either a manifest.json
(every listed file must be present with its sha256) or, without one, the components at the
paths ksboot uses (bin/linux/<arch>/kubeadm, containerd/containerd-<v>-linux-<arch>.tar.gz, ...)
and packages under packages/<os>/ (e.g. packages/debian-12/socat_1.7.4.4-2_amd64.deb). A file
the manifest does not list is an error. The ISO is written atomically, mode 0644 (it holds no
secrets).`,
		Example: `  ksboot bundle -f cluster.yaml -o bundle.iso
  ksboot bundle -f cluster.yaml --arch amd64,arm64 -o bundle.iso --work-dir /var/tmp/ksboot-bundle
  ksboot bundle --from-dir ./bundle -o bundle.iso
  ksboot bundle --from-dir ./bundle --kubernetes-version v1.37.2 -o bundle.iso   # no manifest.json yet`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBundle(cmd.Context(), s, o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", "cluster file: its Kubernetes version, mirror and zone select the downloads")
	f.StringVarP(&o.output, "output", "o", "bundle.iso", "bundle ISO to write")
	f.StringSliceVar(&o.arches, "arch", []string{"amd64"}, "architectures to include: amd64, arm64 (comma-separated)")
	f.StringVar(&o.fromDir, "from-dir", "", "pack this directory instead of downloading")
	f.StringVar(&o.workDir, "work-dir", "", "download directory, kept for resuming (default: the output's name with .d instead of .iso)")
	f.StringVar(&o.k8s, "kubernetes-version", "", "with --from-dir and no manifest.json: the Kubernetes version the directory holds (default: the cluster file's, or "+cluster.DefaultKubernetesVersion+")")
	return cmd
}

func runBundle(ctx context.Context, s *streams, o *bundleOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	for _, a := range o.arches {
		if a != "amd64" && a != "arm64" {
			return &exitError{code: exitValidation, err: fmt.Errorf("--arch %q: use amd64 or arm64", a)}
		}
	}
	arches := slices.Compact(slices.Sorted(slices.Values(o.arches)))
	if o.output == "" {
		return &exitError{code: exitValidation, err: errors.New("--output is empty")}
	}
	if o.fromDir != "" && o.workDir != "" {
		return &exitError{code: exitValidation, err: errors.New("--from-dir and --work-dir exclude each other: --from-dir packs a directory as it is")}
	}
	dir := o.fromDir
	spec := image.BundleSpec{KubernetesVersion: o.k8s, Arches: arches}
	if dir == "" || (o.file != "" && o.k8s == "") {
		c, _, err := loadClusterOrExample(s, o.file)
		if err != nil {
			return err
		}
		if spec.KubernetesVersion == "" {
			spec.KubernetesVersion = c.Spec.Kubernetes.Version
		}
		if dir == "" {
			if dir, err = download(ctx, s, o, c, arches); err != nil {
				return err
			}
		}
	}
	if spec.KubernetesVersion == "" {
		spec.KubernetesVersion = cluster.DefaultKubernetesVersion
	}
	m, files, err := image.ReadBundleDir(dir, spec)
	if err != nil {
		return err
	}
	modTime, ok, err := image.SourceDateEpoch()
	if err != nil {
		return err
	}
	if !ok {
		modTime = time.Now()
	}
	if d := filepath.Dir(o.output); d != "." {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating the output directory: %w", err)
		}
	}
	start := time.Now()
	if err := image.WriteBundleISO(o.output, files, image.Options{ModTime: modTime}); err != nil {
		return err
	}
	var size int64
	if st, err := os.Stat(o.output); err == nil {
		size = st.Size()
	}
	fmt.Fprintf(s.out, "bundle %s: %d artifacts for Kubernetes %s (%s), %d MiB, label %s, written in %s\n",
		o.output, len(m.Artifacts), m.KubernetesVersion, strings.Join(arches, ","), size>>20, artifacts.DefaultLabel, time.Since(start).Round(100*time.Millisecond))
	fmt.Fprintf(s.out, "attach it to every machine and set spec.artifacts.bundle: %s%s\n", artifacts.LabelPrefix, artifacts.DefaultLabel)
	return nil
}

// download fetches the cluster's components into the work directory and writes its manifest,
// returning the directory.
func download(ctx context.Context, s *streams, o *bundleOptions, c *cluster.Cluster, arches []string) (string, error) {
	dir := o.workDir
	if dir == "" {
		dir = strings.TrimSuffix(o.output, filepath.Ext(o.output)) + ".d"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the work directory: %w", err)
	}
	if err := removeTemps(dir); err != nil {
		return "", err
	}
	src := artifacts.NewHTTPMirror(c.Spec.Artifacts, c.Spec.Zone, nil)
	version := c.Spec.Kubernetes.Version
	fmt.Fprintf(s.err, "downloading Kubernetes %s components for %s from %s into %s\n", version, strings.Join(arches, ","), src, dir)
	m := &artifacts.Manifest{FormatVersion: artifacts.ManifestFormatVersion, KubernetesVersion: version}
	var all []artifacts.Artifact
	for _, arch := range arches {
		all = append(all, artifacts.Components(version, arch)...)
	}
	for i, a := range all {
		rel, err := image.BundlePath(a)
		if err != nil {
			return "", err
		}
		sum, fetched, err := fetchOne(ctx, src, a, filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return "", err
		}
		what := "already downloaded"
		if fetched {
			what = "downloaded from " + src.Location(a)
		}
		fmt.Fprintf(s.err, "[%d/%d] %s: %s (sha256 %s)\n", i+1, len(all), a, what, sum)
		m.Artifacts = append(m.Artifacts, artifacts.Entry{Name: a.Name, Version: a.Version, Arch: a.Arch, Kind: a.Kind, Path: rel, SHA256: sum})
	}
	data, err := m.Marshal()
	if err != nil {
		return "", err
	}
	if err := atomicfile.Write(filepath.Join(dir, artifacts.ManifestFile), data, 0o644, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// fetchOne makes dst the artifact's file. The checksum comes first: a file already at dst with
// that sha256 is kept (the download's body is never read), so a second run costs one small
// request per artifact.
func fetchOne(ctx context.Context, src artifacts.Source, a artifacts.Artifact, dst string) (sum string, fetched bool, err error) {
	blob, err := src.Open(ctx, a)
	if err != nil {
		return "", false, fmt.Errorf("downloading %s from %s: %w", a, src.Location(a), err)
	}
	want := strings.ToLower(blob.SHA256)
	if have, err := artifacts.FileSHA256(dst); err == nil && have == want {
		blob.Body.Close()
		return have, false, nil
	}
	tmp, sum, err := artifacts.Fetch(ctx, openedSource{src, blob}, a, filepath.Dir(dst))
	if err != nil {
		return "", false, err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return "", false, fmt.Errorf("downloading %s: %w", a, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", false, fmt.Errorf("downloading %s: %w", a, err)
	}
	return sum, true, nil
}

// openedSource hands Fetch a blob already opened (its checksum was needed first), so the
// file is requested once.
type openedSource struct {
	artifacts.Source
	blob *artifacts.Blob
}

func (o openedSource) Open(context.Context, artifacts.Artifact) (*artifacts.Blob, error) {
	return o.blob, nil
}

// removeTemps deletes partial downloads an interrupted run left in the work directory; they
// carry artifacts.TempPrefix, and nothing else is touched.
func removeTemps(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && (strings.HasPrefix(d.Name(), artifacts.TempPrefix) || atomicfile.IsTemp(d.Name())) {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("removing a partial download: %w", err)
			}
		}
		return nil
	})
}
