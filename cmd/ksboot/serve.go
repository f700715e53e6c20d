package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/image"
)

func newServeCmd(s *streams) *cobra.Command {
	var dir, listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve user-data seeds over HTTP for PXE and network installs",
		Long: `Serve a tree made by "ksboot build-seed --format user-data" over HTTP. Boot a machine with
"ds=nocloud;s=http://SERVER:PORT/<host>/" on its kernel command line (PXE) and cloud-init fetches
its user-data, meta-data and network-config from here; the agent binary is served as /ksboot.`,
		Example: `  ksboot build-seed -f cluster.yaml --format user-data --agent-url http://10.0.0.1:8080/ksboot -o seeds/
  ksboot serve -d seeds/ --listen 10.0.0.1:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return fmt.Errorf("-d %s: not a directory made by build-seed --format user-data", dir)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listening on %s: %w", listen, err)
			}
			srv := &http.Server{Handler: image.Handler(dir), ReadHeaderTimeout: 10 * time.Second}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(shutdown)
			}()
			fmt.Fprintf(s.out, "serving %s on http://%s/ (nodes: ds=nocloud;s=http://%s/<host>/)\n", dir, ln.Addr(), ln.Addr())
			slog.Info("serving seeds", "dir", dir, "address", ln.Addr().String())
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serving seeds: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "d", "seeds", "directory made by build-seed --format user-data")
	cmd.Flags().StringVar(&listen, "listen", ":8080", "address to listen on")
	return cmd
}
