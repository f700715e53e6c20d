package joinorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/ksboot/ksboot/cluster"
)

// Defaults of Options.
const (
	DefaultTimeout     = 30 * time.Minute
	DefaultInterval    = 5 * time.Second
	DefaultCallTimeout = 5 * time.Second
	// remindEvery is how often an unchanged wait is reported again on the console.
	remindEvery = 2 * time.Minute
	// certMargin is how much longer than the wait the minted certificates stay valid.
	certMargin = 10 * time.Minute
)

// Options configure one wait.
type Options struct {
	// Config is the node config of the joining control plane (its seed carries the CA keys).
	Config *cluster.NodeConfig
	// Node is the joining control plane's name.
	Node string
	// Endpoint is host:port of the API server that the discover phase verified.
	Endpoint string
	// Timeout bounds the whole wait (default DefaultTimeout).
	Timeout time.Duration
	// Interval is the pause between rounds (default DefaultInterval).
	Interval time.Duration
	// CallTimeout bounds each API, etcd and /readyz call (default DefaultCallTimeout).
	CallTimeout time.Duration
	// Resolve maps a control plane's <address>:<port> (etcd, /readyz) to where to connect;
	// nil connects to it as it is. Tests map the addresses of the cluster file to loopback.
	Resolve func(hostport string) string
	Logger  *slog.Logger
	// Console gets one short line whenever what is waited for changes.
	Console io.Writer
	// Progress, if set, gets the same summary whenever it changes ("" once all are ready), for
	// the node's status and its announcement.
	Progress func(string)
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	return o
}

// NotReadyError is returned when the earlier control planes were not all ready in time.
type NotReadyError struct {
	Node    string
	Timeout time.Duration
	Waiting []string // "cp1: not a Node yet", one per control plane that was not ready
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("control plane %s joins only after the control planes before it, and within %s these were not ready: %s",
		e.Node, e.Timeout, strings.Join(e.Waiting, "; "))
}

// Wait returns once every control plane before o.Node in spec.roleGroups.control-plane is a
// Ready Node, a started voting etcd member that answers health, and has a healthy API server;
// at once for the first control plane. It reports progress on o.Console and returns a
// *NotReadyError naming those not ready after o.Timeout. It only reads, so it can run again
// after a reboot.
func Wait(ctx context.Context, o Options) error {
	o = o.withDefaults()
	cps, err := Earlier(&o.Config.Cluster, o.Node)
	if err != nil || len(cps) == 0 {
		return err
	}
	if o.Endpoint == "" {
		return errors.New("waiting for the control planes before this one needs the API endpoint that the discover phase verifies; run it first")
	}
	creds, err := mint(o.Config.Secrets, o.Node, time.Now(), o.Timeout+certMargin)
	if err != nil {
		return fmt.Errorf("client certificates to check the control planes before this one: %w", err)
	}
	p, err := newProber(o, creds)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Console, "ksboot: control plane %s joins after %s: waiting until each is a Ready Node, a voting etcd member and a healthy API server (at most %s)\n",
		o.Node, names(cps), o.Timeout)
	start := time.Now()
	deadline := start.Add(o.Timeout)
	shown := map[string]string{} // control plane → what the console last said it waits for
	var lastShown time.Time
	selfNoted := false
	progress := ""
	for {
		verdicts, selfMember := p.round(ctx, cps)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for control planes %s: %w", names(cps), err)
		}
		if selfMember && !selfNoted {
			selfNoted = true
			fmt.Fprintf(o.Console, "ksboot: %s is already an etcd member (its join was cut short after kubeadm added it): "+
				"waiting only for the control planes before it; its own etcd, restarted by the kubelet, counts toward their quorum\n", o.Node)
			o.Logger.Warn("this control plane is already an etcd member; waiting for the earlier control planes before kubeadm reset and join", "node", o.Node)
		}
		var waiting []string
		remind := time.Since(lastShown) >= remindEvery
		for _, v := range verdicts {
			if len(v.missing) == 0 {
				if shown[v.cp.Name] != "" {
					fmt.Fprintf(o.Console, "ksboot: control plane %s is ready now\n", v.cp.Name)
				}
				shown[v.cp.Name] = ""
				continue
			}
			line := v.String()
			waiting = append(waiting, line)
			if shown[v.cp.Name] != line || remind {
				fmt.Fprintf(o.Console, "ksboot: waiting for control plane %s (%s of at most %s)\n", line, time.Since(start).Round(time.Second), o.Timeout)
				o.Logger.Info("waiting for an earlier control plane", "control_plane", v.cp.Name, "missing", strings.Join(v.missing, "; "))
				lastShown = time.Now()
			}
			shown[v.cp.Name] = line
		}
		if len(waiting) == 0 {
			if progress != "" {
				o.Progress("")
			}
			fmt.Fprintf(o.Console, "ksboot: the control planes before %s are ready (%s): each a Ready Node, a voting etcd member and a healthy API server\n", o.Node, names(cps))
			o.Logger.Info("the control planes before this one are ready", "control_planes", names(cps), "after", time.Since(start).Round(time.Second).String())
			return nil
		}
		if summary := "waiting for control plane " + strings.Join(waiting, "; "); summary != progress {
			progress = summary
			o.Progress(summary)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return &NotReadyError{Node: o.Node, Timeout: o.Timeout, Waiting: waiting}
		}
		t := time.NewTimer(min(o.Interval, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for control planes %s: %w", names(cps), ctx.Err())
		case <-t.C:
		}
	}
}

// Describe says, without contacting anything, what Wait would wait for before node joins
// (for a dry run); "" when node waits for nobody.
func Describe(c *cluster.Cluster, node string, timeout time.Duration) (string, error) {
	cps, err := Earlier(c, node)
	if err != nil || len(cps) == 0 {
		return "", err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	parts := make([]string, len(cps))
	for i, cp := range cps {
		parts[i] = fmt.Sprintf("%s (Ready Node; started voting etcd member answering health at %s; /readyz at %s or mirror pod %s Ready)",
			cp.Name, cp.Etcd(), cp.API(c), cp.MirrorPod())
	}
	return fmt.Sprintf("would wait: before kubeadm join, for control plane %s, at most %s, with client certificates minted in memory from the seed's cluster and etcd CAs (not contacted: a dry run sends nothing)",
		strings.Join(parts, ", "), timeout), nil
}
