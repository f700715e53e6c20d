package addons

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
)

// Defaults of Options.
const (
	// DefaultNodeTimeout bounds the wait for every node to be Ready. Workers boot in parallel
	// with the init node but install their runtime and pull images themselves, and the last
	// control planes join one at a time.
	DefaultNodeTimeout = 30 * time.Minute
	// DefaultStorageTimeout bounds the wait for the OpenEBS provisioner and its default
	// StorageClass once every node is Ready: the provisioner's image is small, but on a loaded
	// control plane starting a pod sandbox alone took minutes (docs/design-notes.md, run 20).
	DefaultStorageTimeout = 15 * time.Minute
	// DefaultInterval is how often waits look again.
	DefaultInterval = 5 * time.Second
)

// Component files of Render.
const (
	CNIFile     = "cni.yaml"
	StorageFile = "storage.yaml"
)

// Options configure the addons step.
type Options struct {
	// Cluster is the defaulted, validated cluster file (the node config's cluster).
	Cluster *cluster.Cluster
	// CalicoSource is where the Calico manifest comes from; nil means HTTPSource with
	// spec.artifacts.mirror (upstream when empty). The agent passes a DirSource for an
	// offline bundle.
	CalicoSource ManifestSource
	// CalicoArtifact overrides CalicoManifest (tests use a small fake manifest).
	CalicoArtifact *Artifact
	// NodeTimeout bounds the node Ready wait; zero means DefaultNodeTimeout.
	NodeTimeout time.Duration
	// StorageTimeout bounds the wait for OpenEBS LocalPV (the provisioner Deployment available,
	// StorageClass openebs-hostpath the default); zero means DefaultStorageTimeout.
	StorageTimeout time.Duration
	// Interval is the polling interval of waits; zero means DefaultInterval.
	Interval time.Duration
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.CalicoSource == nil {
		o.CalicoSource = HTTPSource{Mirror: o.Cluster.Spec.Artifacts.Mirror}
	}
	if o.CalicoArtifact == nil {
		a := CalicoManifest
		o.CalicoArtifact = &a
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = DefaultNodeTimeout
	}
	if o.StorageTimeout == 0 {
		o.StorageTimeout = DefaultStorageTimeout
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Component is one group of objects, rendered to one file.
type Component struct {
	// Name is "cni" or "storage".
	Name string
	// File is the file name Render writes.
	File string
	// Objects are in apply order; empty when the cluster wants none (network plugin "none",
	// or a default StorageClass the operator provides).
	Objects []*unstructured.Unstructured
}

// Manifests builds the objects of the step: the CNI the cluster file selects and the default
// storage.
func Manifests(ctx context.Context, o Options) ([]Component, error) {
	o = o.withDefaults()
	c := o.Cluster
	cni := Component{Name: "cni", File: CNIFile}
	var err error
	switch c.Spec.Network.Plugin {
	case "flannel":
		cni.Objects, err = Flannel(c)
	case "calico":
		cni.Objects, err = Calico(ctx, c, o.CalicoSource, *o.CalicoArtifact)
	case "none":
		// The operator installs a CNI; nodes stay NotReady until they do.
	default:
		err = fmt.Errorf("unknown network plugin %q (want calico, flannel or none)", c.Spec.Network.Plugin)
	}
	if err != nil {
		return nil, err
	}
	storage := Component{Name: "storage", File: StorageFile}
	if storage.Objects, err = OpenEBS(c); err != nil {
		return nil, err
	}
	return []Component{cni, storage}, nil
}

// Render writes every component to dir as YAML, one file each (cni.yaml, storage.yaml), for
// `ksboot agent run --dry-run`; it needs no cluster. A component with no objects is written as
// an empty file, so the directory always shows what the step would do. It returns the paths.
func Render(ctx context.Context, dir string, o Options) ([]string, error) {
	comps, err := Manifests(ctx, o)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, comp := range comps {
		data, err := kube.MarshalYAML(comp.Objects)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, comp.File)
		if err := kube.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// Fetch is an artifact a dry run needs but does not fetch: the component made from it, where
// the agent would take it from, and the digest it is held to.
type Fetch struct {
	// Component is the component's name ("cni").
	Component string
	// File is the file Render would have written for the component.
	File string
	// Artifact is the pinned artifact.
	Artifact Artifact
	// From is where the agent's source would look (CalicoSource.Describe).
	From string
}

// DryRun is Render for `ksboot agent run --dry-run`, which must never touch the network: it
// writes the components ksboot generates (Flannel, OpenEBS) to dir, and for a component made
// from a fetched artifact (Calico) it writes nothing and returns a Fetch naming the source and
// the pinned SHA-256 instead. A file such a component left there from an earlier dry run is
// removed, so the directory never shows a CNI this cluster file does not select.
func DryRun(ctx context.Context, dir string, o Options) ([]string, []Fetch, error) {
	o = o.withDefaults()
	if o.Cluster.Spec.Network.Plugin != "calico" {
		paths, err := Render(ctx, dir, o)
		return paths, nil, err
	}
	a := *o.CalicoArtifact
	fetch := Fetch{Component: "cni", File: CNIFile, Artifact: a, From: o.CalicoSource.Describe(a)}
	if err := os.Remove(filepath.Join(dir, CNIFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("removing the stale %s: %w", filepath.Join(dir, CNIFile), err)
	}
	objs, err := OpenEBS(o.Cluster)
	if err != nil {
		return nil, nil, err
	}
	data, err := kube.MarshalYAML(objs)
	if err != nil {
		return nil, nil, err
	}
	p := filepath.Join(dir, StorageFile)
	if err := kube.WriteFile(p, data, 0o644); err != nil {
		return nil, nil, err
	}
	return []string{p}, []Fetch{fetch}, nil
}

// Run is the addons step on the init node: apply the CNI and the default storage by
// server-side apply, then label the nodes and wait until every node is Ready, and then, when
// ksboot deployed OpenEBS, until its provisioner is available and openebs-hostpath is the
// default StorageClass (the provisioner's pod needs the pod network, so it comes after the
// nodes; KubeSphere, the next step, claims volumes of the default class). Running it again on a
// finished cluster changes nothing.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	o = o.withDefaults()
	kc, err := kube.New(cfg)
	if err != nil {
		return err
	}
	comps, err := Manifests(ctx, o)
	if err != nil {
		return err
	}
	openebs := false
	for _, comp := range comps {
		if len(comp.Objects) == 0 {
			o.Logger.InfoContext(ctx, "nothing to apply", "component", comp.Name)
			continue
		}
		o.Logger.InfoContext(ctx, "applying", "component", comp.Name, "objects", len(comp.Objects))
		if err := kc.Apply(ctx, comp.Objects); err != nil {
			return err
		}
		openebs = openebs || comp.Name == "storage"
	}
	err = WaitNodesReady(ctx, kc.Clientset, o.Cluster, o.Interval, o.NodeTimeout, func(r NodeReport) {
		o.Logger.InfoContext(ctx, "waiting for nodes", "state", r.String())
	})
	if err != nil || !openebs {
		return err
	}
	if ok, err := SchedulableNode(ctx, kc.Clientset); err != nil {
		return err
	} else if !ok {
		// Control planes alone, workers to join later (generic seeds): the provisioner cannot
		// be placed yet, and waiting here would fail a cluster that is forming as planned.
		o.Logger.WarnContext(ctx, "not waiting for the default storage: every node is tainted or cordoned, so the OpenEBS provisioner "+
			"cannot run until a worker joins; it starts then", "what", OpenEBSWaitWhat)
		return nil
	}
	o.Logger.InfoContext(ctx, "waiting for the default storage", "what", OpenEBSWaitWhat, "timeout", o.StorageTimeout)
	return WaitOpenEBS(ctx, kc.Clientset, o.Interval, o.StorageTimeout, func(ps []kube.Problem) {
		o.Logger.InfoContext(ctx, "waiting for the default storage", "pending", problemsText(ps))
	})
}

// SchedulableNode says whether some Node can take a pod without tolerations (the OpenEBS
// provisioner has none): not cordoned and without NoSchedule or NoExecute taints. The
// not-ready and unreachable taints are not counted: the nodes are Ready when this is asked,
// and the node lifecycle controller removes those taints shortly after.
func SchedulableNode(ctx context.Context, cs kubernetes.Interface) (bool, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, fmt.Errorf("listing nodes: %w", err)
	}
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			continue
		}
		if !slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
			if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
				return false
			}
			return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
		}) {
			return true, nil
		}
	}
	return false, nil
}
