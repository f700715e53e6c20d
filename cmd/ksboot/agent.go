package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/bootstrap"
	"github.com/ksboot/ksboot/bootstrap/preflight"
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
	agent.AddCommand(runCmd, phaseCmd, announceCmd, statusCmd)
	return agent
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
