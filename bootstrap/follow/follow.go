package follow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/bootstrap/certs"
	"github.com/ksboot/ksboot/bootstrap/nodedelete"
)

// Defaults: a reset request is taken up within a poll interval; node delete waits ten minutes.
const (
	DefaultInterval = 15 * time.Second
	callTimeout     = 30 * time.Second
	quietFor        = 5 * time.Minute
)

// Options say which Node to follow and what to do.
type Options struct {
	// Node is the Node's name.
	Node string
	// Client returns a client with the node's credentials; it fails while the node has
	// none yet (before it joins), and is asked again each interval.
	Client func() (kubernetes.Interface, error)
	// Reset resets the machine (package reset); Follow returns what it returns.
	Reset func(ctx context.Context) error
	// Interval between reads of the Node (DefaultInterval when 0).
	Interval time.Duration
	Logger   *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time

	// Certificates, on a control plane (nil elsewhere): ReadCerts reads the node's kubeadm
	// certificates, RenewCerts renews them (package certs). Every CertsEvery (an hour when 0)
	// the agent reports them on its Node (certs.ReportAnnotation) and renews them when one
	// expires within certs.RenewBefore; `ksboot certs renew` asks for a renewal at once
	// (certs.RenewRequestedAnnotation, answered with certs.RenewedAnnotation).
	ReadCerts  func() ([]certs.Cert, error)
	RenewCerts func(ctx context.Context) error
	CertsEvery time.Duration

	// Upgrade, if set, runs every round with the Node as read (package upgrade's Follow): it
	// takes part in a rolling upgrade that `ksboot upgrade` requested.
	Upgrade func(ctx context.Context, cs kubernetes.Interface, node *corev1.Node) error
}

// ErrReset is returned after the machine was reset: the caller exits, and the unit does not
// start again (its node config is gone).
var ErrReset = errors.New("the machine was reset on request")

// Follow reads the Node every interval until ctx ends or a reset request is carried out. A
// request is taken up once: the agent records ResetStartedAnnotation (node delete waits for
// it before deleting the Node, whose kubelet would otherwise register it again), then resets.
// Failures to reach the API server are logged, at most every five minutes while they last,
// and retried.
func Follow(ctx context.Context, o Options) error {
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CertsEvery == 0 {
		o.CertsEvery = time.Hour
	}
	var certsChecked time.Time
	var cs kubernetes.Interface
	var last string
	var lastAt time.Time
	report := func(state string) {
		if state != last || o.Now().Sub(lastAt) >= quietFor {
			o.Logger.Info(state, "node", o.Node)
			last, lastAt = state, o.Now()
		}
	}
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for {
		if cs == nil {
			c, err := o.Client()
			if err != nil {
				report("waiting for the node's credentials: " + err.Error())
			} else {
				cs = c
			}
		}
		if cs != nil {
			node, err := get(ctx, cs, o)
			switch {
			case err != nil:
				report("cannot read the Node: " + err.Error())
			case node.Annotations[nodedelete.ResetRequestedAnnotation] != "":
				requested := node.Annotations[nodedelete.ResetRequestedAnnotation]
				o.Logger.Info("reset requested (ksboot node delete): resetting the machine", "node", o.Node, "requested", requested)
				if err := annotate(ctx, cs, o, nodedelete.ResetStartedAnnotation, o.Now().UTC().Format(time.RFC3339)); err != nil {
					// Without the mark node delete keeps the Node; reset anyway: it was asked for.
					o.Logger.Warn("could not record that the reset began; resetting anyway", "node", o.Node, "error", err)
				}
				if err := o.Reset(ctx); err != nil {
					return fmt.Errorf("reset requested by ksboot node delete at %s: %w", requested, err)
				}
				return ErrReset
			default:
				if o.ReadCerts != nil {
					// A request is answered by echoing it: the request is only told apart by its value.
					requested := node.Annotations[certs.RenewRequestedAnnotation]
					asked := ""
					if requested != "" && node.Annotations[certs.RenewedAnnotation] != requested {
						asked = requested
					}
					if asked != "" || certsChecked.IsZero() || o.Now().Sub(certsChecked) >= o.CertsEvery {
						certsChecked = o.Now()
						if err := followCerts(ctx, cs, o, node.Annotations[certs.ReportAnnotation], asked); err != nil {
							o.Logger.Warn("certificates", "node", o.Node, "error", err)
						}
					}
				}
				if o.Upgrade != nil {
					if err := o.Upgrade(ctx, cs, node); err != nil {
						o.Logger.Warn("upgrade", "node", o.Node, "error", err)
					}
				}
				report("following the Node: no reset request")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func get(ctx context.Context, cs kubernetes.Interface, o Options) (*corev1.Node, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	n, err := cs.CoreV1().Nodes().Get(cctx, o.Node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no Node %s (deleted before this machine was reset? run `ksboot agent reset --yes` here)", o.Node)
	}
	return n, err
}

// followCerts reads the certificates, renews them when asked (asked is the request's value) or
// due, and reports them on the Node when the report changed; a request is answered by writing
// its value to certs.RenewedAnnotation.
func followCerts(ctx context.Context, cs kubernetes.Interface, o Options, reported, asked string) error {
	list, err := o.ReadCerts()
	if err != nil {
		return err
	}
	if asked != "" || certs.Due(list, o.Now()) {
		if e, ok := certs.Earliest(list); ok {
			o.Logger.Info("renewing the certificates", "node", o.Node, "requested", asked, "earliest", e.Name, "expires", e.NotAfter)
		}
		if err := o.RenewCerts(ctx); err != nil {
			return fmt.Errorf("renewing: %w", err)
		}
		if list, err = o.ReadCerts(); err != nil {
			return err
		}
	}
	if asked != "" {
		if err := annotate(ctx, cs, o, certs.RenewedAnnotation, asked); err != nil {
			return fmt.Errorf("answering the renewal request: %w", err)
		}
	}
	if r := certs.Report(list); r != reported {
		if err := annotate(ctx, cs, o, certs.ReportAnnotation, r); err != nil {
			return fmt.Errorf("reporting: %w", err)
		}
	}
	return nil
}

func annotate(ctx context.Context, cs kubernetes.Interface, o Options, key, value string) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)
	_, err := cs.CoreV1().Nodes().Patch(cctx, o.Node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
