package follow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

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
			requested, err := check(ctx, cs, o)
			switch {
			case err != nil:
				report("cannot read the Node: " + err.Error())
			case requested != "":
				o.Logger.Info("reset requested (ksboot node delete): resetting the machine", "node", o.Node, "requested", requested)
				if err := markStarted(ctx, cs, o); err != nil {
					// Without the mark node delete keeps the Node; reset anyway: it was asked for.
					o.Logger.Warn("could not record that the reset began; resetting anyway", "node", o.Node, "error", err)
				}
				if err := o.Reset(ctx); err != nil {
					return fmt.Errorf("reset requested by ksboot node delete at %s: %w", requested, err)
				}
				return ErrReset
			default:
				report("following the Node: no request")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// check returns the time of a reset request on the Node, if any.
func check(ctx context.Context, cs kubernetes.Interface, o Options) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	n, err := cs.CoreV1().Nodes().Get(cctx, o.Node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("no Node %s (deleted before this machine was reset? run `ksboot agent reset --yes` here)", o.Node)
	}
	if err != nil {
		return "", err
	}
	return n.Annotations[nodedelete.ResetRequestedAnnotation], nil
}

func markStarted(ctx context.Context, cs kubernetes.Interface, o Options) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, nodedelete.ResetStartedAnnotation, o.Now().UTC().Format(time.RFC3339))
	_, err := cs.CoreV1().Nodes().Patch(cctx, o.Node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
