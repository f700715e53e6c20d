package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/bootstrap"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/systemd"
)

func newAgentCmd(s *streams) *cobra.Command {
	agent := &cobra.Command{
		Use:   "agent",
		Short: "The on-node agent (started by ksboot-bootstrap.service on first boot)",
	}
	var configPath, root string
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "Bootstrap this node from its node config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := bootstrap.Run(cmd.Context(), bootstrap.Options{
				ConfigPath: configPath, Root: root, Version: version,
				Logger: slog.Default(), Console: s.out,
			})
			return err
		},
	}
	runCmd.Flags().StringVar(&configPath, "config", systemd.NodeConfigPath, "node config written by the seed")
	runCmd.Flags().StringVar(&root, "root", "/", "directory every node path is resolved under (for tests and dry runs)")

	var statusRoot, output string
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "Show how far this node's bootstrap got",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			st, err := state.Read(statusRoot)
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
				for _, p := range st.Phases {
					fmt.Fprintf(s.out, "  %-12s %-8s %8s %s\n", p.Name, p.Outcome, p.Duration, p.Error)
				}
				return nil
			default:
				return fmt.Errorf("-o %q: use table or json", output)
			}
		},
	}
	statusCmd.Flags().StringVar(&statusRoot, "root", "/", "directory node paths are resolved under")
	statusCmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	agent.AddCommand(runCmd, statusCmd)
	return agent
}
