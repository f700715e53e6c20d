package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/bootstrap"
	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/nodedelete"
	"github.com/ksboot/ksboot/bootstrap/preflight"
	"github.com/ksboot/ksboot/bootstrap/reset"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/systemd"
)

type agentOptions struct {
	config           string
	root             string
	dryRun           bool
	skip             []string
	discoverTimeout  time.Duration
	joinOrderTimeout time.Duration
}

func newAgentCmd(s *streams) *cobra.Command {
	agent := &cobra.Command{
		Use:   "agent",
		Short: "The on-node agent (started by ksboot-bootstrap.service on first boot)",
		Long: `The agent bootstraps the machine it runs on from /etc/ksboot/node.yaml, in phases:
` + bootstrap.PhaseNames() + `.
Each phase is idempotent; a reboot or a crash resumes at the phase that did not finish. Status is
kept in /var/lib/ksboot/status.json; success writes /var/lib/ksboot/bootstrap.complete, a failure
/var/lib/ksboot/bootstrap.failed with the phase, the reason and what to do next.`,
	}
	o := &agentOptions{}
	addFlags := func(cmd *cobra.Command) {
		f := cmd.Flags()
		f.StringVar(&o.config, "config", systemd.NodeConfigPath, "node config written by the seed (read under --root)")
		f.StringVar(&o.root, "root", "/", "directory every node path is resolved under")
		f.BoolVar(&o.dryRun, "dry-run", false, "print the commands instead of running them; write files only under --root")
		f.DurationVar(&o.discoverTimeout, "discover-timeout", 0, "how long to wait for the control plane (default 30m)")
		f.DurationVar(&o.joinOrderTimeout, "join-order-timeout", 0,
			"how long a joining control plane waits for the control planes before it to be ready (default 30m)")
	}
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "Bootstrap this node: run every phase in order",
		Example: `  ksboot agent run                                   # on a node (the unit does this)
  ksboot agent run --dry-run --root /tmp/n1 --config /etc/ksboot/node.yaml   # read what it would do`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, s, o, "") },
	}
	addFlags(runCmd)
	runCmd.Flags().StringSliceVar(&o.skip, "skip-phases", nil, "phases not to run ("+bootstrap.PhaseNames()+")")

	phaseCmd := &cobra.Command{
		Use:     "phase NAME",
		Short:   "Run one phase again (" + bootstrap.PhaseNames() + ")",
		Example: `  ksboot agent phase preflight`,
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return runAgent(cmd, s, o, args[0]) },
	}
	addFlags(phaseCmd)

	announceCmd := &cobra.Command{
		Use:   "announce",
		Short: "Announce this node over mDNS, following its status (ksboot-announce.service)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bootstrap.Announce(cmd.Context(), bootstrap.Options{ConfigPath: o.config, Root: o.root, Logger: slog.Default()})
		},
	}
	addFlags(announceCmd)

	serveCmd := &cobra.Command{
		Use:   "serve",
		Short: "Follow this node's Node object and carry out what is asked there (ksboot-agent.service)",
		Long: `The day-two agent. Once the node has joined, it reads its own Node every 15 seconds with
the kubelet's credentials (/etc/kubernetes/kubelet.conf; until that exists it waits) and carries
out the requests made there: the reset that ksboot node delete asks for (annotation
` + nodedelete.ResetRequestedAnnotation + `), which it acknowledges (` + nodedelete.ResetStartedAnnotation + `) and then
performs as ksboot agent reset does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return bootstrap.Serve(ctx, bootstrap.Options{ConfigPath: o.config, Root: o.root, Logger: slog.Default(), Console: s.out})
		},
	}
	addFlags(serveCmd)

	var output string
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "Show how far this node's bootstrap got",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			st, err := state.Read(o.root)
			if err != nil {
				return err
			}
			if st == nil {
				return fmt.Errorf("no status yet (%s): the agent has not run on this machine", systemd.StateDir+"/status.json")
			}
			switch output {
			case "json":
				enc := json.NewEncoder(s.out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			case "", "table":
				fmt.Fprintf(s.out, "cluster %s  node %s  roles %s  phase %s\n", st.Cluster, st.Node, strings.Join(st.Roles, ","), st.Phase)
				if st.Endpoint != "" {
					fmt.Fprintf(s.out, "control plane %s\n", st.Endpoint)
				}
				if r := st.Retry; r != nil {
					// The agent waits longer before each retry of a phase that keeps failing.
					fmt.Fprintf(s.out, "phase %s failed on %d run(s) in a row, last at %s; retried %s after that\n",
						r.Phase, r.Failures, r.Failed.Format(time.RFC3339), max(bootstrap.RetryDelay(r.Failures), bootstrap.RetryBase))
				}
				fmt.Fprintf(s.out, "%-12s %-8s %9s  %s\n", "PHASE", "OUTCOME", "DURATION", "ERROR")
				for _, p := range st.Phases {
					fmt.Fprintf(s.out, "%-12s %-8s %9s  %s\n", p.Name, p.Outcome, p.Duration, p.Error)
				}
				if st.Banner != "" {
					fmt.Fprintln(s.out, st.Banner)
				}
				return nil
			default:
				return fmt.Errorf("-o %q: use table or json", output)
			}
		},
	}
	statusCmd.Flags().StringVar(&o.root, "root", "/", "directory node paths are resolved under")
	statusCmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	agent.AddCommand(runCmd, phaseCmd, announceCmd, serveCmd, statusCmd, newAgentResetCmd(s))
	return agent
}

// newAgentResetCmd is `ksboot agent reset`: package reset does the work.
func newAgentResetCmd(s *streams) *cobra.Command {
	var root string
	var dryRun, yes bool
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Undo what the agent did on this node, so that the machine can boot a seed again",
		Long: `Reset this node as kubeadm reset and KubeKey's kk delete node do: stop ksboot-bootstrap.service,
run kubeadm reset, stop and disable the kubelet, remove the CNI files, links, iptables rules and
IPVS services the cluster made, remove /etc/kubernetes, /var/lib/kubelet, /var/lib/etcd,
ksboot's state in /var/lib/ksboot and /etc/ksboot (the node config holds the join token), then
run cloud-init clean so that the next boot applies the attached seed again.

containerd, its images and the installed binaries are kept: the next bootstrap re-uses them.
The Node object stays in the cluster: delete it with kubectl delete node. This is destructive:
it asks for --yes (or --dry-run, which only prints what it would do).`,
		Example: `  ksboot agent reset --dry-run         # what it would do, nothing run or removed
  ksboot agent reset --yes             # on the node, as root; then reboot with a seed attached`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !yes && !dryRun {
				return errors.New("ksboot agent reset is destructive: it runs kubeadm reset and removes this node's Kubernetes, " +
					"network and ksboot state; pass --yes to go ahead, or --dry-run to see what it would do")
			}
			if !dryRun && root != "/" {
				// The files are under --root, but the commands (kubeadm reset, iptables) would run
				// on this machine.
				return fmt.Errorf("--root %s is only for --dry-run: the commands would still reset this machine", root)
			}
			if !dryRun && os.Geteuid() != 0 {
				return errors.New("ksboot agent reset changes the machine and must run as root (or use --dry-run)")
			}
			o := reset.Options{Root: host.Root(root), Exec: host.Real{}, Console: s.out, Stream: s.out, Logger: slog.Default()}
			if dryRun {
				o.Exec = &host.DryRun{Out: s.out}
			}
			_, err := reset.Run(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&root, "root", "/", "directory every node path is resolved under")
	f.BoolVar(&dryRun, "dry-run", false, "print the commands and the paths instead of running and removing them")
	f.BoolVar(&yes, "yes", false, "confirm: reset this machine")
	return cmd
}

func runAgent(cmd *cobra.Command, s *streams, o *agentOptions, only string) error {
	if !o.dryRun && o.root == "/" && os.Geteuid() != 0 {
		return errors.New("the agent changes the machine and must run as root (or use --dry-run --root DIR)")
	}
	_, err := bootstrap.Run(cmd.Context(), bootstrap.Options{
		ConfigPath: o.config, Root: o.root, Version: version, Logger: slog.Default(), Console: s.out,
		DryRun: o.dryRun, Skip: o.skip, Only: only, DiscoverTimeout: o.discoverTimeout, JoinOrderTimeout: o.joinOrderTimeout,
	})
	var pf *preflight.Error
	if errors.As(err, &pf) {
		return &exitError{code: exitPreflight, err: err}
	}
	return err
}
