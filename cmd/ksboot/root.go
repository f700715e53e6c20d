package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/cluster"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "v0.1.0-dev"

// Exit codes, as kubeadm uses them: 1 failure, 2 preflight, 3 invalid input.
const (
	exitFailure    = 1
	exitPreflight  = 2
	exitValidation = 3
)

// exitError carries an explicit exit code for errors that are not validation errors (for example
// "discover found nothing", which is an answer rather than a crash).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// streams are the command's standard input and outputs; tests pass buffers.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

func run(args []string, in io.Reader, out, errOut io.Writer) int {
	s := &streams{in: in, out: out, err: errOut}
	root := newRootCmd(s)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintf(errOut, "error: %v\n", err)
	return exitCode(err)
}

// exitCode maps an error to the process exit code; this is the only place that does so.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case cluster.IsInvalid(err):
		return exitValidation
	default:
		return exitFailure
	}
}

func newRootCmd(s *streams) *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:   "ksboot",
		Short: "Install KubeSphere clusters whose nodes bootstrap themselves",
		Long: `ksboot turns one cluster file into cloud-init seeds. Every machine boots its seed,
installs its own container runtime and Kubernetes, finds the control plane (mDNS or a fixed
endpoint), runs kubeadm init or join, and the first control-plane node deploys the CNI, storage
and KubeSphere. No SSH, no central machine.`,
		Example: `  ksboot create config --with-kubernetes v1.37.2 -f cluster.yaml
  ksboot validate -f cluster.yaml
  ksboot build-seed -f cluster.yaml -o seeds/`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
	}
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.SetIn(s.in)
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(
		newCreateCmd(s),
		newValidateCmd(s),
		newBuildSeedCmd(s),
		newServeCmd(s),
		newBundleCmd(s),
		newDiscoverCmd(s),
		newWatchCmd(s),
		newTokenCmd(s),
		newNodeCmd(s),
		newCertsCmd(s),
		newUpgradeCmd(s),
		newAgentCmd(s),
		newVersionCmd(s),
	)
	return root
}

func newVersionCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the ksboot version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(s.out, version)
			return err
		},
	}
}

// printProblems writes warnings (and errors) to w, one per line.
func printProblems(w io.Writer, ps cluster.Problems) {
	for _, p := range ps {
		fmt.Fprintln(w, p.String())
	}
}
