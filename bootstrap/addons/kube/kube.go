package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/util/retry"
)

// FieldManager is the server-side apply field manager of everything ksboot applies. It is fixed
// so that a second run owns exactly the fields the first one set.
const FieldManager = "ksboot"

const (
	// mappingTimeout bounds how long Apply waits for the API server to serve a kind it does not
	// know yet: a CustomResourceDefinition applied a moment earlier is served after a second or
	// two, once it is Established.
	mappingTimeout = 60 * time.Second
	mappingPoll    = 500 * time.Millisecond
)

// Client bundles the clients the steps use. Build it with New.
type Client struct {
	Config    *rest.Config
	Clientset kubernetes.Interface
	Dynamic   dynamic.Interface
	Discovery discovery.CachedDiscoveryInterface
	mapper    *restmapper.DeferredDiscoveryRESTMapper
}

// New makes the clients for cfg. It does not contact the API server.
func New(cfg *rest.Config) (*Client, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the dynamic client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the discovery client: %w", err)
	}
	cached := memory.NewMemCacheClient(disc)
	return &Client{
		Config: rest.CopyConfig(cfg), Clientset: cs, Dynamic: dyn, Discovery: cached,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(cached),
	}, nil
}

// RESTMapper is the client's discovery-backed mapper (shared with Helm, so both see new CRDs).
func (c *Client) RESTMapper() meta.RESTMapper { return c.mapper }

// Apply server-side applies the objects in order, with FieldManager and forced conflicts.
// Order matters: namespaces and CustomResourceDefinitions come before what lives in them.
func (c *Client) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, u := range objs {
		if err := c.ApplyOne(ctx, u); err != nil {
			return err
		}
	}
	return nil
}

// ApplyOne server-side applies one object. A request that failed for a passing reason (the API
// server timed out, was overloaded or dropped the connection) is sent again, a few times with
// growing pauses: on a slow control plane (run 18 of the e2e suite, under TCG) one timeout
// otherwise failed a whole phase that the next request would have finished.
func (c *Client) ApplyOne(ctx context.Context, u *unstructured.Unstructured) error {
	ri, err := c.ResourceFor(ctx, u)
	if err != nil {
		return fmt.Errorf("applying %s: %w", Describe(u), err)
	}
	var live *unstructured.Unstructured
	err = retryTransient(ctx, applyBackoff, func() error {
		var err error
		live, err = ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		return err
	})
	if err != nil {
		return fmt.Errorf("applying %s: %w", Describe(u), err)
	}
	if u.GroupVersionKind().GroupKind() == crdKind {
		return waitEstablished(ctx, ri, live)
	}
	return nil
}

var crdKind = schema.GroupKind{Group: apiextensionsv1.GroupName, Kind: "CustomResourceDefinition"}

// waitEstablished waits (bounded by mappingTimeout) until the API server reports the
// CustomResourceDefinition Established, as `kubectl wait --for=condition=Established` and Helm's
// CRD install do: a custom resource sent before that can be refused ("error resolving
// resource", run 20 of the e2e suite, on a slow control plane).
func waitEstablished(ctx context.Context, ri dynamic.ResourceInterface, live *unstructured.Unstructured) error {
	what := Describe(live)
	err := Poll(ctx, mappingPoll, mappingTimeout, func(ctx context.Context) (bool, error) {
		if established(live) {
			return true, nil
		}
		var err error
		if live, err = ri.Get(ctx, live.GetName(), metav1.GetOptions{}); err != nil {
			return false, err
		}
		return established(live), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to be Established: %w", what, err)
	}
	return nil
}

// established reports whether a CustomResourceDefinition's Established condition is True, as
// the API server itself decides it (apihelpers).
func established(u *unstructured.Unstructured) bool {
	var crd apiextensionsv1.CustomResourceDefinition
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &crd); err != nil {
		return false
	}
	return apihelpers.IsCRDConditionTrue(&crd, apiextensionsv1.Established)
}

// applyBackoff spaces the attempts of one apply: 6 attempts over about 75 s, besides each
// request's own time.
var applyBackoff = wait.Backoff{Steps: 6, Duration: 5 * time.Second, Factor: 1.5, Jitter: 0.1}

// retryTransient calls fn until it succeeds, fails for a reason that will not pass by itself,
// runs out of attempts, or ctx ends.
func retryTransient(ctx context.Context, b wait.Backoff, fn func() error) error {
	return retry.OnError(b, func(err error) bool { return ctx.Err() == nil && transient(err) }, fn)
}

// transient reports whether an API request failed for a reason that passes: the server's own
// timeouts, overload answers and internal errors (an etcd request that timed out, a custom
// resource's handler not built yet: the API server calls such cases self-healing), and a
// connection refused, reset or cut short.
func transient(err error) bool {
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsInternalError(err) ||
		apierrors.IsServiceUnavailable(err) || utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) ||
		utilnet.IsProbableEOF(err) || utilnet.IsHTTP2ConnectionLost(err)
}

// ResourceFor returns the dynamic client of the object's resource (namespaced if the kind is).
// A kind the server does not serve yet is looked up again, with fresh discovery, until
// mappingTimeout passes: it may be a custom resource whose definition was just applied.
func (c *Client) ResourceFor(ctx context.Context, u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	m, err := c.Mapping(ctx, u.GroupVersionKind())
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return c.Dynamic.Resource(m.Resource), nil
	}
	if u.GetNamespace() == "" {
		return nil, fmt.Errorf("%s is namespaced but the object has no namespace", u.GetKind())
	}
	return c.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace()), nil
}

// Mapping maps a kind to its resource, waiting (bounded) for kinds that are not served yet.
func (c *Client) Mapping(ctx context.Context, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	ctx, cancel := context.WithTimeout(ctx, mappingTimeout)
	defer cancel()
	for {
		m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil {
			return m, nil
		}
		if !meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("looking up the resource of %s: %w", gvk, err)
		}
		// Discovery is cached; a new CRD appears only after a reset.
		c.mapper.Reset()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the API server did not serve %s within %s (is its CustomResourceDefinition applied and Established?): %w",
				gvk, mappingTimeout, err)
		case <-time.After(mappingPoll):
		}
	}
}

// Get reads the live object named like u, or returns an error satisfying apierrors.IsNotFound.
func (c *Client) Get(ctx context.Context, u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	ri, err := c.ResourceFor(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", Describe(u), err)
	}
	live, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", Describe(u), err)
	}
	return live, nil
}

// Describe names an object for messages: "Kind namespace/name" or "Kind name".
func Describe(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return u.GetKind() + " " + ns + "/" + u.GetName()
	}
	return u.GetKind() + " " + u.GetName()
}

// objectScheme knows the typed objects the steps build: the built-in kinds and
// CustomResourceDefinitions.
var objectScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		panic(err) // static registration; cannot fail at run time
	}
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// ToUnstructured converts typed objects (k8s.io/api structs, CRDs, or unstructured ones) into
// unstructured objects with apiVersion and kind set from the scheme, so generators need not fill
// TypeMeta by hand. Fields that are null because a Go zero value was converted
// (creationTimestamp: null), an empty spec and the status are dropped: generated objects state
// intent, the status belongs to the cluster, and the zero values would only clutter rendered
// manifests.
func ToUnstructured(objs ...runtime.Object) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			out = append(out, u)
			continue
		}
		gvks, _, err := objectScheme.ObjectKinds(o)
		if err != nil || len(gvks) == 0 {
			return nil, fmt.Errorf("converting %T: no kind registered: %w", o, err)
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, fmt.Errorf("converting %T: %w", o, err)
		}
		pruneNulls(m)
		delete(m, "status")
		if spec, ok := m["spec"].(map[string]any); ok && len(spec) == 0 {
			delete(m, "spec")
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetGroupVersionKind(gvks[0])
		out = append(out, u)
	}
	return out, nil
}

func pruneNulls(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e == nil {
				delete(t, k)
				continue
			}
			pruneNulls(e)
		}
	case []any:
		for _, e := range t {
			pruneNulls(e)
		}
	}
}

// ErrTimeout is wrapped by every wait that ran out of time.
var ErrTimeout = errors.New("timed out")
