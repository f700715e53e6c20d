package follow

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ksboot/ksboot/bootstrap/nodedelete"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestFollowResetsOnRequest: credentials that appear late are picked up, a Node without a
// request is left alone, and a request is acknowledged before the reset runs, once.
func TestFollowResetsOnRequest(t *testing.T) {
	cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}})
	calls := 0
	var acknowledgedFirst bool
	resets := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := Follow(ctx, Options{Node: "w1", Interval: 10 * time.Millisecond, Logger: quiet,
		Client: func() (kubernetes.Interface, error) {
			calls++
			if calls < 3 {
				return nil, errors.New("kubelet.conf is not there yet")
			}
			// The request arrives while the agent follows the Node.
			go func() {
				time.Sleep(100 * time.Millisecond)
				n, _ := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{})
				n.Annotations = map[string]string{nodedelete.ResetRequestedAnnotation: "2026-12-06T23:00:00Z"}
				if _, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
					t.Error(err)
				}
			}()
			return cs, nil
		},
		Reset: func(ctx context.Context) error {
			resets++
			n, _ := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{})
			acknowledgedFirst = n.Annotations[nodedelete.ResetStartedAnnotation] != ""
			return nil
		}})
	if !errors.Is(err, ErrReset) || resets != 1 || !acknowledgedFirst {
		t.Errorf("Follow = %v after %d resets (acknowledged first: %v), want ErrReset after one, acknowledged", err, resets, acknowledgedFirst)
	}
	if calls != 3 {
		t.Errorf("the client was asked for %d times, want until it came (3)", calls)
	}
}

// TestFollowWithoutRequest: no request, no reset; Follow returns when ctx ends. A failed reset
// is returned with the request's time.
func TestFollowWithoutRequest(t *testing.T) {
	cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	reset := func(context.Context) error { t.Error("reset without a request"); return nil }
	if err := Follow(ctx, Options{Node: "w1", Interval: 10 * time.Millisecond, Logger: quiet,
		Client: func() (kubernetes.Interface, error) { return cs, nil }, Reset: reset}); err != nil {
		t.Errorf("Follow = %v, want nil when ctx ends", err)
	}

	cs = fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1",
		Annotations: map[string]string{nodedelete.ResetRequestedAnnotation: "2026-12-06T23:00:00Z"}}})
	err := Follow(context.Background(), Options{Node: "w1", Interval: 10 * time.Millisecond, Logger: quiet,
		Client: func() (kubernetes.Interface, error) { return cs, nil },
		Reset:  func(context.Context) error { return errors.New("kubeadm reset failed") }})
	if err == nil || errors.Is(err, ErrReset) {
		t.Errorf("Follow = %v, want the reset's failure", err)
	}
}
