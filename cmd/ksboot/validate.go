package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/cluster"
)

func newValidateCmd(s *streams) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a cluster file and report every problem at once",
		Long: `Decode the cluster file strictly (unknown fields are errors) and check it. Every problem is
printed as FILE:LINE: field.path: message. Exit code 3 when the file is invalid; warnings alone
do not fail.`,
		Example: `  ksboot validate -f cluster.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, ps, err := cluster.Load(file)
			printProblems(s.err, ps)
			if err != nil {
				if cluster.IsInvalid(err) {
					return &exitError{code: exitValidation, err: fmt.Errorf("%s is not valid (%d errors)", file, len(ps.Errors()))}
				}
				return err
			}
			fmt.Fprintf(s.out, "%s: cluster %q is valid: %d hosts, Kubernetes %s", file, c.Name(), len(c.Spec.Hosts), c.Spec.Kubernetes.Version)
			if c.Spec.KubeSphere.Enabled {
				fmt.Fprintf(s.out, ", KubeSphere %s", c.Spec.KubeSphere.Version)
			}
			fmt.Fprintln(s.out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "cluster file")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}
