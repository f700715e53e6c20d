package install

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/workflow"
)

// ImageNamespace is the containerd namespace the CRI plugin (and so the kubelet) uses.
const ImageNamespace = "k8s.io"

// ImportImages loads the source's image archives for this architecture into containerd's
// k8s.io namespace with `ctr images import`. An archive whose images (from the manifest) are
// all listed already is skipped; after an import every listed image must be present, so an
// archive that does not hold what the manifest promises fails here and not at kubeadm's image
// pull. A mirror has no archives: images are then pulled from registries when needed.
func ImportImages(ctx context.Context, o Options) error {
	o, err := o.prepare(ctx)
	if err != nil {
		return err
	}
	var archives []artifacts.Entry
	var skipped, otherRelease []string
	for _, e := range o.Source.Files(artifacts.KindImage) {
		switch {
		case e.Arch != "" && e.Arch != o.Arch:
		case ForOtherRelease(e.Images, o.kubernetesVersion()):
			// A bundle that carries two releases (the one installed and the one a rolling
			// upgrade moves to) holds each release's Kubernetes images: only this one's serve.
			otherRelease = append(otherRelease, e.Name+" "+e.Version)
		case !o.Config.Node.IsControlPlane() && len(e.Images) > 0 && !slices.ContainsFunc(e.Images, RunsOnEveryNode):
			// A worker never runs the control plane: importing (and unpacking, slow on small
			// machines) those images would only cost time and disk.
			skipped = append(skipped, e.Name)
		default:
			archives = append(archives, e)
		}
	}
	if len(skipped) > 0 {
		o.say("images: skipped %s (control-plane images; this node is a worker)", joinNames(skipped))
	}
	if len(otherRelease) > 0 {
		o.say("images: skipped %s (another Kubernetes release than %s)", joinNames(otherRelease), o.kubernetesVersion())
	}
	if len(archives) == 0 {
		o.say("images: none in %s; images will be pulled from registries", o.Source)
		return nil
	}
	have, err := listImages(ctx, o)
	if err != nil {
		return err
	}
	var imported, present []string
	for _, e := range archives {
		if len(e.Images) > 0 && containsAll(have, e.Images) {
			present = append(present, e.Name)
			continue
		}
		p, err := o.Source.LocalPath(e)
		if err != nil {
			return sourceHint(err, o.Source)
		}
		o.Logger.Info("importing images", "archive", e.Path, "images", strings.Join(e.Images, ","))
		if _, err := o.Exec.Run(ctx, ctr("images", "import", p)); err != nil {
			return workflow.WithHint(fmt.Errorf("installing %s from %s: %w", e, o.Source.Location(e.Artifact()), err),
				"check that containerd is running (systemctl status containerd) and that the archive is an OCI or docker image archive")
		}
		imported = append(imported, e.Name)
		if len(e.Images) == 0 || o.dryRun() {
			continue
		}
		if have, err = listImages(ctx, o); err != nil {
			return err
		}
		if missing := missingFrom(have, e.Images); len(missing) > 0 {
			return workflow.WithHint(fmt.Errorf("installing %s from %s: %w: the archive did not provide %s", e, o.Source.Location(e.Artifact()),
				artifacts.ErrNotFound, strings.Join(missing, ", ")), "the bundle's manifest and its image archive disagree; rebuild the bundle")
		}
	}
	if len(imported) == 0 {
		o.say("images: %s already imported", joinNames(present))
	} else {
		o.say("images: imported %s", joinNames(imported))
	}
	return nil
}

// releaseImages are the images kubeadm tags with the Kubernetes release itself, by the last
// element of their repository.
var releaseImages = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"}

// ForOtherRelease is true when refs (an image archive's references) hold one of kubeadm's
// release-tagged images (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy)
// and none at kubernetesVersion's tag: the archive belongs to another Kubernetes release.
func ForOtherRelease(refs []string, kubernetesVersion string) bool {
	tag := releaseTag(kubernetesVersion)
	other := false
	for _, ref := range refs {
		repo, t := splitRef(ref)
		if !slices.Contains(releaseImages, path.Base(repo)) || t == "" {
			continue
		}
		if t == tag {
			return false
		}
		other = true
	}
	return other
}

// splitRef returns an image reference's repository path and tag ("" for a digest), as
// go-containerregistry parses it (the image package reads references with it too); a
// reference it cannot parse is returned whole, with no tag.
func splitRef(ref string) (repo, tag string) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return ref, ""
	}
	if t, ok := r.(name.Tag); ok {
		tag = t.TagStr()
	}
	return r.Context().RepositoryStr(), tag
}

// controlPlaneImages are the images only control-plane nodes run, by the last element of their
// repository (which stays the same under registry rewriting): kubeadm's control plane, and
// kube-vip (internalLoadbalancer: kube-vip), whose static pod runs on control planes only.
var controlPlaneImages = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kube-vip"}

// RunsOnEveryNode is false for an image only control-plane nodes run (by the last element of
// its repository): workers skip archives of such images, and bundles keep them apart.
func RunsOnEveryNode(ref string) bool {
	repo, _ := splitRef(ref)
	return !slices.Contains(controlPlaneImages, path.Base(repo))
}

// ctr runs containerd's ctr from where Binaries put it, in the CRI namespace.
func ctr(args ...string) host.Cmd {
	return host.Cmd{Name: path.Join(BinDir, "ctr"), Args: append([]string{"-n", ImageNamespace}, args...)}
}

func listImages(ctx context.Context, o Options) ([]string, error) {
	out, err := o.Exec.Run(ctx, ctr("images", "ls", "-q"))
	if err != nil {
		return nil, workflow.WithHint(fmt.Errorf("listing containerd images: %w", err), "check that containerd is running (systemctl status containerd)")
	}
	return strings.Fields(string(out)), nil
}

func containsAll(have, want []string) bool { return len(missingFrom(have, want)) == 0 }

func missingFrom(have, want []string) []string {
	var missing []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			missing = append(missing, w)
		}
	}
	return missing
}
