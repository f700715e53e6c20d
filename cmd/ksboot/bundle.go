package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/collect"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/image"
)

type bundleOptions struct {
	file    string
	output  string
	arches  []string
	fromDir string
	workDir string
	k8s     string
	osList  []string
}

func newBundleCmd(s *streams) *cobra.Command {
	o := &bundleOptions{}
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Build the offline bundle ISO (label KSBUNDLE) that nodes install from",
		Long: `Build an offline bundle: an ISO9660 image labelled KSBUNDLE holding manifest.json and the
files it lists, each with its sha256. Attach it to each machine as a second CD-ROM and set
spec.artifacts.bundle: label:KSBUNDLE in the cluster file; nodes then install without network.

Online (-f): for the cluster's Kubernetes version and each --arch, ksboot collects into
--work-dir
  - kubeadm, kubelet, kubectl, containerd, runc, crictl and the CNI plugins, from
    spec.artifacts.mirror (or zone: cn mirrors, or upstream), each checked against its published
    sha256;
  - Calico's manifest (network plugin calico), checked against the digest ksboot pins;
  - the ks-core chart of KubeSphere v4 (spec.kubesphere.chart, or the chart ksboot knows for the
    version), in charts/;
  - the container images kubeadm, the CNI (Flannel or Calico), OpenEBS LocalPV and KubeSphere
    need, as OCI archives images/<group>-<arch>.tar for ctr images import, under the names the
    nodes ask for: with registry.privateRegistry the images are pulled from that registry, as
    the nodes would pull them, otherwise from their upstream registries. Credentials come from
    registry.auths and your Docker configuration. For KubeSphere these are the ks-installer
    image (v3) or, for v4, the images of the ks-core chart's workloads, of its Helm hook Jobs
    and those its kubesphere-config names (kubectl, node shell, Helm executor); the images KubeSphere pulls
    afterwards (v3's components, v4's extensions) are not known to ksboot and not included;
  - with --os, the OS packages the nodes need (socat, conntrack, ebtables, ipset, curl,
    openssl, tar) with all their dependencies, in packages/<os>/. apt-get downloads them using
    this machine's apt sources, so this works only on a machine of that distribution and
    release (ksboot bundle --os debian-12 on Debian 12); RPM distributions are not supported
    yet. Otherwise put the packages in a directory and use --from-dir.
Long downloads show their progress on a terminal. An interrupted run resumes: files already
verified are not downloaded again (the work directory keeps a small state file until the run
finishes). The finished work directory is itself a valid bundle directory.

Offline (--from-dir): the bundle is packed from a directory that holds either a manifest.json
(every listed file must be present with its sha256) or, without one, the components at the
paths ksboot uses (bin/linux/<arch>/kubeadm, containerd/containerd-<v>-linux-<arch>.tar.gz, ...),
packages under packages/<os>/ (e.g. packages/debian-12/socat_1.7.4.4-2_amd64.deb) and image
archives images/<name>-<arch>.tar. A file
the manifest does not list is an error. The ISO is written atomically, mode 0644 (it holds no
secrets).`,
		Example: `  ksboot bundle -f cluster.yaml -o bundle.iso
  ksboot bundle -f cluster.yaml --arch amd64,arm64 --os debian-12 -o bundle.iso --work-dir /var/tmp/ksboot-bundle
  ksboot bundle --from-dir ./bundle -o bundle.iso
  ksboot bundle --from-dir ./bundle --kubernetes-version v1.37.2 -o bundle.iso   # no manifest.json yet`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBundle(cmd.Context(), s, o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", "cluster file: its Kubernetes version, mirror, zone, registry, network, storage and KubeSphere select the content")
	f.StringVarP(&o.output, "output", "o", "bundle.iso", "bundle ISO to write")
	f.StringSliceVar(&o.arches, "arch", []string{"amd64"}, "architectures to include: amd64, arm64 (comma-separated)")
	f.StringSliceVar(&o.osList, "os", nil, "distributions to include OS packages for, as os-release ID-VERSION_ID: debian-12 (or debian12); needs a machine of that distribution (comma-separated)")
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
	if o.fromDir != "" && len(o.osList) > 0 {
		return &exitError{code: exitValidation, err: errors.New("--from-dir and --os exclude each other: --from-dir packs the packages the directory holds")}
	}
	modTime, ok, err := image.SourceDateEpoch()
	if err != nil {
		return err
	}
	if !ok {
		modTime = time.Now()
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
			dir = o.workDir
			if dir == "" {
				dir = strings.TrimSuffix(o.output, filepath.Ext(o.output)) + ".d"
			}
			_, err := collect.Collect(ctx, collect.Options{
				Cluster: c, Arches: arches, WorkDir: dir, OS: o.osList, ModTime: modTime,
				Out: s.err, Progress: progressWriter(s), Logger: slog.Default(),
			})
			if errors.Is(err, collect.ErrInvalid) {
				return &exitError{code: exitValidation, err: err}
			}
			if err != nil {
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

// progressWriter is where live download progress goes: the error stream when it is a
// terminal, nowhere otherwise (logs and pipes get one line per artifact).
func progressWriter(s *streams) io.Writer {
	if f, ok := s.err.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return f
	}
	return nil
}
