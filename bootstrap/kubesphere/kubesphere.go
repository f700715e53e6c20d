package kubesphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
)

// Defaults of Options.
const (
	// DefaultTimeout bounds the wait for KubeSphere to come up: ks-installer pulls a dozen
	// images and runs its playbooks, which takes 10–20 minutes on a fresh cluster.
	DefaultTimeout = 30 * time.Minute
	// DefaultInterval is how often the wait looks again.
	DefaultInterval = 10 * time.Second
	// File is the file Render writes.
	File = "kubesphere.yaml"
)

// Options configure the kubesphere step.
type Options struct {
	// Cluster is the defaulted, validated cluster file.
	Cluster *cluster.Cluster
	// ConsoleAddress is the init node's address, used for the console URL and etcd endpoint
	// when the cluster file gives the first control plane no static address.
	ConsoleAddress string
	// BundleDir is the mounted offline bundle; relative chart paths are inside it.
	BundleDir string
	// HTTPClient downloads the chart; nil means a client with a five-minute timeout.
	HTTPClient *http.Client
	// Timeout bounds the wait for KubeSphere (v4: the chart's hooks and its Deployments
	// together); zero means DefaultTimeout.
	Timeout time.Duration
	// Interval is the polling interval; zero means DefaultInterval.
	Interval time.Duration
	// Root, when set, makes Run write the banner to <Root>/etc/issue.d/ksboot-kubesphere.issue.
	Root string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// ErrDisabled is returned by Run and Render when spec.kubesphere.enabled is false.
var ErrDisabled = errors.New("KubeSphere is not enabled in the cluster file (spec.kubesphere.enabled)")

// Run installs KubeSphere on the cluster and waits, bounded, until it is up: for v3 the
// ks-installer objects and the ClusterConfiguration are applied and the installer's status
// (status.core.status enabled, at the configured version) is awaited; for v4 the ks-core
// chart is installed with Helm and its Deployments must become available. It returns the
// welcome banner, and writes it under Options.Root when that is set. Running it again on a
// finished cluster changes nothing.
func Run(ctx context.Context, cfg *rest.Config, o Options) (*Banner, error) {
	o = o.withDefaults()
	if !o.Cluster.Spec.KubeSphere.Enabled {
		return nil, ErrDisabled
	}
	p, err := ParamsFromCluster(o.Cluster, o.ConsoleAddress)
	if err != nil {
		return nil, err
	}
	kc, err := kube.New(cfg)
	if err != nil {
		return nil, err
	}
	if p.Major == 3 {
		if err = runInstaller(ctx, kc, p, o); err == nil {
			p = installerPassword(ctx, kc, p, o.Logger)
		}
	} else {
		err = runChart(ctx, kc, p, o)
	}
	if err != nil {
		return nil, err
	}
	b := NewBanner(p)
	if o.Root != "" {
		path, err := WriteIssue(o.Root, b)
		if err != nil {
			return &b, err
		}
		o.Logger.InfoContext(ctx, "wrote the KubeSphere banner", "path", path)
	}
	return &b, nil
}

// Render writes what Run would apply to <dir>/kubesphere.yaml, without a cluster: the v3
// installer objects and ClusterConfiguration, or the v4 chart rendered as `helm template`
// would (which needs the chart). It returns the path.
func Render(ctx context.Context, dir string, o Options) (string, error) {
	o = o.withDefaults()
	if !o.Cluster.Spec.KubeSphere.Enabled {
		return "", ErrDisabled
	}
	p, err := ParamsFromCluster(o.Cluster, o.ConsoleAddress)
	if err != nil {
		return "", err
	}
	var data []byte
	if p.Major == 3 {
		objs, err := InstallerObjects(p)
		if err != nil {
			return "", err
		}
		if data, err = kube.MarshalYAML(objs); err != nil {
			return "", err
		}
	} else {
		ch, err := LoadChart(ctx, p.Chart, o.BundleDir, o.HTTPClient)
		if err != nil {
			return "", err
		}
		r, err := RenderParams(ch, p, o.Cluster.Spec.Kubernetes.Version)
		if err != nil {
			return "", err
		}
		data = []byte(r.Manifest)
	}
	path := filepath.Join(dir, File)
	// Chart values and the ClusterConfiguration may carry the admin password.
	if err := kube.WriteFile(path, data, 0o600); err != nil {
		return "", err
	}
	return path, nil
}

func runInstaller(ctx context.Context, kc *kube.Client, p Params, o Options) error {
	objs, err := InstallerObjects(p)
	if err != nil {
		return err
	}
	o.Logger.InfoContext(ctx, "applying ks-installer", "version", p.Version, "image", p.InstallerImage, "objects", len(objs))
	if err := kc.Apply(ctx, objs); err != nil {
		return err
	}
	cc := objs[len(objs)-1]
	var state string
	err = kube.Poll(ctx, o.Interval, o.Timeout, func(ctx context.Context) (bool, error) {
		live, err := kc.Get(ctx, cc)
		if err != nil {
			return false, err
		}
		done, s := InstallerDone(live, p.Version)
		if s != state {
			state = s
			o.Logger.InfoContext(ctx, "waiting for ks-installer", "state", s)
		}
		return done, nil
	})
	if err == nil {
		return nil
	}
	pending := []kube.Problem{{Object: kube.Describe(cc), Reason: "NotEnabled", Message: state}}
	return diagnose(ctx, kc, fmt.Sprintf("KubeSphere %s (ks-installer)", p.Version), err, pending)
}

// installerPassword takes the initial admin password from where ks-installer put it (its
// Secret's initAdminPassword, which its own banner reads), so the banner shows what is true
// also when the installer generated the password. Without the Secret's key the password is
// what the parameters say; a generated one that cannot be read is named by where it is.
func installerPassword(ctx context.Context, kc *kube.Client, p Params, log *slog.Logger) Params {
	sec, err := kc.Clientset.CoreV1().Secrets(Namespace).Get(ctx, InstallerSecret, metav1.GetOptions{})
	if err == nil && len(sec.Data[InstallerSecretPasswordKey]) > 0 {
		p.AdminPassword = string(sec.Data[InstallerSecretPasswordKey])
		return p
	}
	if p.PasswordGenerated {
		why := "it has no " + InstallerSecretPasswordKey
		if err != nil {
			why = err.Error()
		}
		log.WarnContext(ctx, "cannot read the password ks-installer generated", "secret", Namespace+"/"+InstallerSecret, "reason", why)
		p.AdminPassword = GeneratedPassword
	}
	return p
}

// InstallerDone reads the status ks-installer writes into the ClusterConfiguration:
// status.core.status is "enabled" with status.core.version the version being installed once
// the core is up. state describes the status for progress and errors.
func InstallerDone(cc *unstructured.Unstructured, version string) (done bool, state string) {
	st, _, _ := unstructured.NestedString(cc.Object, "status", "core", "status")
	v, _, _ := unstructured.NestedString(cc.Object, "status", "core", "version")
	if st == "" {
		return false, "status.core.status is not set yet: ks-installer has not finished the core"
	}
	state = fmt.Sprintf("status.core.status=%s version=%s", st, v)
	var failed []string
	if m, ok, _ := unstructured.NestedMap(cc.Object, "status"); ok {
		for comp, val := range m {
			if mm, ok := val.(map[string]any); ok && mm["status"] == "failed" {
				failed = append(failed, comp)
			}
		}
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		state += "; failed: " + strings.Join(failed, ", ") + " (kubectl -n " + Namespace + " logs deploy/" + InstallerName + ")"
	}
	return st == "enabled" && (v == "" || v == version), state
}

func runChart(ctx context.Context, kc *kube.Client, p Params, o Options) error {
	// One deadline for the chart's hooks and its Deployments together.
	deadline := time.Now().Add(o.Timeout)
	left := func() time.Duration { return max(time.Until(deadline), time.Second).Round(100 * time.Millisecond) }
	ch, err := LoadChart(ctx, p.Chart, o.BundleDir, o.HTTPClient)
	if err != nil {
		return err
	}
	// Rendering first refuses registry settings the chart cannot follow before anything is
	// applied, and names the hook Jobs to watch.
	r, err := RenderParams(ch, p, o.Cluster.Spec.Kubernetes.Version)
	if err != nil {
		return err
	}
	o.Logger.InfoContext(ctx, "installing ks-core", "version", p.Version, "chart", ch.Name()+"-"+ch.Metadata.Version, "imageRegistry", p.ImageRegistry)
	hooks := newHookWatch(kc.Clientset, r.Objects)
	stop := hooks.start(ctx, o.Interval)
	rel, err := InstallChart(ctx, kc, ch, ChartValues(p, ch), left(), o.Logger)
	stop()
	if err != nil {
		var he *HookError
		if errors.As(err, &he) {
			return hooks.diagnose(ctx, p, he)
		}
		return err
	}
	deps, err := ChartDeployments(rel)
	if err != nil {
		return err
	}
	o.Logger.InfoContext(ctx, "waiting for ks-core Deployments", "count", len(deps))
	if err := kube.WaitDeployments(ctx, kc.Clientset, deps, o.Interval, left()); err != nil {
		var we *kube.WaitError
		if errors.As(err, &we) {
			we.What = fmt.Sprintf("KubeSphere %s (Helm release %s/%s)", p.Version, Namespace, ReleaseName)
			return withHint(we)
		}
		return err
	}
	return nil
}

// diagnose turns a failed wait into a WaitError with the pods of KubeSphere's namespaces.
func diagnose(ctx context.Context, kc *kube.Client, what string, err error, pending []kube.Problem) error {
	nss := []string{Namespace}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if list, lerr := kc.Clientset.CoreV1().Namespaces().List(dctx, metav1.ListOptions{}); lerr == nil {
		for _, ns := range list.Items {
			if strings.HasPrefix(ns.Name, "kubesphere-") && ns.Name != Namespace {
				nss = append(nss, ns.Name)
			}
		}
	}
	if d, derr := kc.Clientset.AppsV1().Deployments(Namespace).Get(dctx, InstallerName, metav1.GetOptions{}); derr == nil {
		if ok, why := kube.DeploymentAvailable(d); !ok {
			pending = append(pending, kube.Problem{Object: "deployment " + Namespace + "/" + InstallerName, Reason: "NotAvailable", Message: why})
		}
	}
	return withHint(kube.NewWaitError(ctx, kc.Clientset, what, err, pending, nss...))
}

// withHint adds the mirror advice to a wait that failed on images that could not be pulled.
func withHint(we *kube.WaitError) error {
	pulls := we.ImagePullProblems()
	if len(pulls) == 0 {
		return we
	}
	var imgs []string
	for _, p := range pulls {
		if p.Image != "" && !slices.Contains(imgs, p.Image) {
			imgs = append(imgs, p.Image)
		}
	}
	return fmt.Errorf("%w\ncould not pull %s.\n%s", we, strings.Join(imgs, ", "), MirrorHint)
}
