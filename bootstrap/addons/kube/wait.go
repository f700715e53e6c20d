package kube

import (
	"context"
	"fmt"
	"time"
)

// Poll calls cond every interval until it reports done, ctx ends, or timeout passes; the first
// call is immediate. An error from cond does not stop the wait: during bootstrap the API
// server restarts and watches reconnect, and a failed read is worth another try before the
// deadline. The last such error is part of the timeout error, which wraps ErrTimeout, so
// callers can add what they know about the state of the cluster.
func Poll(ctx context.Context, interval, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	if interval <= 0 {
		interval = time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		done, err := cond(ctx)
		if err == nil && done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-deadline.C:
			if last != nil {
				return fmt.Errorf("%w after %s (last error: %w)", ErrTimeout, timeout, last)
			}
			return fmt.Errorf("%w after %s", ErrTimeout, timeout)
		case <-tick.C:
		}
	}
}
