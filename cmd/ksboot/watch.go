package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/upgrade"
	"github.com/ksboot/ksboot/discovery"
)

type watchOptions struct {
	clusterName string
	config      string
	file        string
	secretsDir  string
	once        bool
	output      string
	until       string
	nodes       int
	timeout     time.Duration
	interval    time.Duration
	iface       string
	kubeconfig  string
}

func newWatchCmd(s *streams) *cobra.Command {
	o := &watchOptions{}
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Watch a cluster's nodes bootstrap themselves (mDNS)",
		Long: `Show a live table of the nodes of a cluster as they announce themselves on this network
segment: node, role, address, phase, time in phase and last error. Works from any machine on the
same segment; --once prints one snapshot (with -o json for scripts). --until ready waits until
every node reports phase done (and at least --nodes of them) and fails after --timeout.

On day two, with --kubeconfig, it reads the cluster through the API instead: each node's role,
kubelet version, readiness and step of a rolling upgrade (ksboot upgrade); --until ready then
waits until every node has finished the upgrade.`,
		Example: `  ksboot watch --cluster sample
  ksboot watch --cluster sample --once -o json
  ksboot watch --cluster sample --until ready --nodes 3 --timeout 45m
  ksboot watch --kubeconfig admin.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runWatch(cmd.Context(), s, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.clusterName, "cluster", "", "cluster name (metadata.name); empty shows every ksboot cluster")
	f.StringVar(&o.config, "config", "", "node config: watch its cluster only (CA id checked)")
	f.StringVarP(&o.file, "filename", "f", "", "cluster file: watch its cluster only (CA id from its secrets)")
	f.StringVar(&o.secretsDir, "secrets", "", "secrets directory for -f")
	f.BoolVar(&o.once, "once", false, "print one snapshot and exit")
	f.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	f.StringVar(&o.until, "until", "", "exit when the cluster reaches this state: ready")
	f.IntVar(&o.nodes, "nodes", 1, "with --until ready: at least this many nodes")
	f.DurationVar(&o.timeout, "timeout", 0, "give up after this long (0: never, unless --until)")
	f.DurationVar(&o.interval, "interval", 2*time.Second, "time between queries")
	f.StringVar(&o.iface, "interface", "", "network interface for mDNS")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "day two: watch through the API instead of mDNS: each node's version, readiness and upgrade step (ksboot upgrade)")
	return cmd
}

func runWatch(ctx context.Context, s *streams, o *watchOptions) error {
	if o.kubeconfig != "" {
		cs, err := kubeadm.ClientFromKubeconfig(o.kubeconfig)
		if err != nil {
			return err
		}
		if o.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.timeout)
			defer cancel()
		}
		if o.once {
			plan, nodes, err := upgrade.State(ctx, cs)
			if err != nil {
				return err
			}
			upgrade.WriteTable(s.out, plan, nodes, time.Now())
			return nil
		}
		return followUpgrade(ctx, s, cs, o.interval, o.until == "ready")
	}
	if o.output != "table" && o.output != "json" {
		return fmt.Errorf("-o %q: use table or json", o.output)
	}
	if o.until != "" && o.until != "ready" {
		return fmt.Errorf("--until %q: only \"ready\" is supported", o.until)
	}
	opts := discovery.Options{Cluster: o.clusterName}
	if o.config != "" || o.file != "" {
		t, err := loadDiscoveryTarget(o.config, o.file, o.secretsDir)
		if err != nil {
			return err
		}
		opts = t.opts
	}
	if o.iface != "" {
		opts.Interface = o.iface
	}
	if o.once {
		t, err := discovery.Snapshot(ctx, opts)
		if err != nil {
			return err
		}
		return writeTable(s, o, t, false)
	}
	if o.until != "" && o.timeout == 0 {
		o.timeout = 60 * time.Minute
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	live := o.output == "table" && isTerminal(s)
	var last discovery.Table
	errReady := errors.New("ready")
	err := discovery.Watch(ctx, opts, o.interval, func(t discovery.Table) error {
		last = t
		if err := writeTable(s, o, t, live); err != nil {
			return err
		}
		if o.until == "ready" && ready(t, o.nodes) {
			return errReady
		}
		return nil
	})
	switch {
	case errors.Is(err, errReady):
		fmt.Fprintf(s.err, "cluster %s is ready: %d node(s) done\n", o.clusterName, len(last.Nodes))
		return nil
	case err != nil:
		return err
	case o.until != "":
		return &exitError{code: exitFailure, err: fmt.Errorf("cluster %q not ready after %s: %s", o.clusterName, o.timeout, notReady(last, o.nodes))}
	}
	return nil
}

// ready is true when at least n current nodes of the cluster report phase done.
func ready(t discovery.Table, n int) bool {
	count := 0
	for _, r := range t.Nodes {
		if r.Foreign || r.Stale {
			continue
		}
		if r.Phase != "done" {
			return false
		}
		count++
	}
	return count >= n && t.Conflict == ""
}

func notReady(t discovery.Table, n int) string {
	var waiting []string
	count := 0
	for _, r := range t.Nodes {
		if r.Foreign || r.Stale {
			continue
		}
		count++
		if r.Phase != "done" {
			msg := r.Node + " in " + r.Phase
			if r.LastError != "" {
				msg += " (" + r.LastError + ")"
			}
			waiting = append(waiting, msg)
		}
	}
	if count < n {
		waiting = append(waiting, fmt.Sprintf("%d of %d nodes seen", count, n))
	}
	if len(waiting) == 0 {
		return "no nodes seen"
	}
	return strings.Join(waiting, "; ")
}

func writeTable(s *streams, o *watchOptions, t discovery.Table, live bool) error {
	if o.output == "json" {
		return t.WriteJSON(s.out)
	}
	if live {
		fmt.Fprint(s.out, "\033[H\033[2J") // redraw in place on a terminal
	}
	return t.WriteText(s.out)
}

func isTerminal(s *streams) bool {
	f, ok := s.out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
