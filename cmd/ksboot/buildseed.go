package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/cloudinit"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/image"
)

const (
	formatISO      = "iso"
	formatVFAT     = "vfat"
	formatUserData = "user-data"
	genericName    = "generic-worker"
)

type buildSeedOptions struct {
	file       string
	outDir     string
	format     string
	nodes      []string
	role       string
	generic    bool
	agent      string
	agentURL   string
	secretsDir string
}

func newBuildSeedCmd(s *streams) *cobra.Command {
	o := &buildSeedOptions{}
	cmd := &cobra.Command{
		Use:   "build-seed",
		Short: "Build cloud-init seeds (ISO, vfat or user-data) for the cluster's machines",
		Long: `Build one cloud-init NoCloud seed per host. Each seed holds user-data, meta-data,
network-config (for static addresses) and the ksboot agent; attach it to the machine (CD-ROM or
second disk) and boot. Without -f the built-in example cluster is used.

Cluster secrets (CAs, service-account key, bootstrap token) are created once in a directory
beside the cluster file and reused, so seeds built later join the same cluster. Control-plane
seeds carry the CA keys; worker seeds carry only the token and the CA pin. Seeds are written 0600.
With SOURCE_DATE_EPOCH set, the same inputs and secrets give byte-identical images.`,
		Example: `  ksboot build-seed                                   # the built-in example, into ./seeds
  ksboot build-seed -f cluster.yaml -o seeds/
  ksboot build-seed -f cluster.yaml --format vfat --node node2
  ksboot build-seed -f cluster.yaml --role worker --generic   # one seed for any number of workers
  ksboot build-seed -f cluster.yaml --format user-data --agent-url http://10.0.0.1:8080/ksboot`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runBuildSeed(s, o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", "cluster file (default: the built-in example)")
	f.StringVarP(&o.outDir, "output", "o", "seeds", "output directory")
	f.StringVar(&o.format, "format", formatISO, "seed format: iso, vfat or user-data")
	f.StringSliceVar(&o.nodes, "node", nil, "build only this host (repeatable)")
	f.StringVar(&o.role, "role", "", "build only hosts with this role (etcd, control-plane, worker)")
	f.BoolVar(&o.generic, "generic", false, "with --role worker: one seed that any number of worker machines can boot")
	f.StringVar(&o.agent, "agent", "", "ksboot binary to put in the seeds (default: this binary)")
	f.StringVar(&o.agentURL, "agent-url", "", "with --format user-data: URL nodes download the agent from")
	f.StringVar(&o.secretsDir, "secrets", "", "cluster secrets directory (default: <cluster name>-secrets beside the cluster file)")
	return cmd
}

// seedJob is one seed to write.
type seedJob struct {
	name string
	nc   *cluster.NodeConfig
}

func runBuildSeed(s *streams, o *buildSeedOptions) error {
	switch o.format {
	case formatISO, formatVFAT, formatUserData:
	default:
		return fmt.Errorf("--format %q: use iso, vfat or user-data", o.format)
	}
	if o.generic && o.role != cluster.RoleWorker {
		return errors.New("--generic needs --role worker: only workers can share one seed")
	}
	if o.generic && len(o.nodes) > 0 {
		return errors.New("--generic and --node exclude each other")
	}
	if o.format == formatUserData && o.agentURL == "" {
		return errors.New("--format user-data needs --agent-url: the URL nodes download the agent from " +
			"(with `ksboot serve -d DIR` that is http://<this machine>:8080/ksboot)")
	}
	c, file, err := loadClusterOrExample(s, o.file)
	if err != nil {
		return err
	}
	secretsDir := o.secretsDir
	if secretsDir == "" {
		anchor := file
		if anchor == "" {
			// The built-in example keeps its secrets beside the output directory, never inside
			// it: `ksboot serve` publishes the output directory.
			abs, err := filepath.Abs(o.outDir)
			if err != nil {
				return fmt.Errorf("resolving %s: %w", o.outDir, err)
			}
			anchor = abs
		}
		secretsDir = cluster.SecretsDir(anchor, c.Name())
	}
	secrets, created, err := cluster.LoadOrCreateSecrets(secretsDir)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(s.err, "created cluster secrets in %s (keep it private and backed up: seeds built later must use it)\n", secretsDir)
	}
	jobs, err := planSeeds(c, secrets, o)
	if err != nil {
		return err
	}
	agentPath := o.agent
	if agentPath == "" {
		if agentPath, err = os.Executable(); err != nil {
			return fmt.Errorf("finding the ksboot binary to put in the seeds (use --agent): %w", err)
		}
	}
	agentData, err := os.ReadFile(agentPath)
	if err != nil {
		return fmt.Errorf("reading the agent binary (--agent): %w", err)
	}
	sum := sha256.Sum256(agentData)
	agent := cloudinit.Agent{SHA256: hex.EncodeToString(sum[:]), URL: o.agentURL}
	modTime, ok, err := image.SourceDateEpoch()
	if err != nil {
		return err
	}
	if !ok {
		modTime = time.Now()
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	if o.format == formatUserData {
		// The agent is served next to the per-host trees for PXE installs.
		if err := image.WriteDir(o.outDir, []image.File{{Name: cloudinit.AgentFile, Data: agentData, Mode: 0o755}}); err != nil {
			return err
		}
	}
	pin, err := secrets.CAPin()
	if err != nil {
		return err
	}
	for i, j := range jobs {
		seed, err := cloudinit.Render(j.nc, agent)
		if err != nil {
			return fmt.Errorf("seed for %s: %w", j.name, err)
		}
		files := []image.File{
			{Name: cloudinit.UserDataFile, Data: seed.UserData, Mode: 0o644},
			{Name: cloudinit.MetaDataFile, Data: seed.MetaData, Mode: 0o644},
		}
		if seed.NetworkConfig != nil {
			files = append(files, image.File{Name: cloudinit.NetworkConfigFile, Data: seed.NetworkConfig, Mode: 0o644})
		}
		var out string
		switch o.format {
		case formatISO:
			out = filepath.Join(o.outDir, j.name+".iso")
			files = append(files, image.File{Name: cloudinit.AgentFile, Data: agentData, Mode: 0o755})
			err = image.WriteISO(out, files, image.Options{ModTime: modTime})
		case formatVFAT:
			out = filepath.Join(o.outDir, j.name+".img")
			files = append(files, image.File{Name: cloudinit.AgentFile, Data: agentData, Mode: 0o755})
			err = image.WriteVFAT(out, files, image.Options{ModTime: modTime})
		case formatUserData:
			out = filepath.Join(o.outDir, j.name) + string(filepath.Separator)
			err = image.WriteDir(filepath.Join(o.outDir, j.name), files)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(s.out, "[%d/%d] %s  %s\n", i+1, len(jobs), out, describeNode(j.nc))
	}
	fmt.Fprintf(s.out, "cluster %s: %d seed(s) in %s; CA pin %s\n", c.Name(), len(jobs), o.outDir, pin)
	return nil
}

func describeNode(nc *cluster.NodeConfig) string {
	roles := strings.Join(nc.Node.Roles, "+")
	switch {
	case nc.Node.Generic:
		return roles + ", generic (any number of machines)"
	case nc.Node.Init:
		return roles + ", runs kubeadm init"
	}
	return roles
}

// loadClusterOrExample loads the cluster file, or the built-in example when file is empty.
// Warnings are printed; an invalid file is an error.
func loadClusterOrExample(s *streams, file string) (*cluster.Cluster, string, error) {
	if file == "" {
		fmt.Fprintln(s.err, "no -f given: using the built-in example cluster (see `ksboot create config`)")
		return cluster.Sample(cluster.SampleOptions{}), "", nil
	}
	c, ps, err := cluster.Load(file)
	printProblems(s.err, ps)
	if err != nil {
		return nil, "", err
	}
	return c, file, nil
}

// planSeeds decides which seeds to build from the node and role filters.
func planSeeds(c *cluster.Cluster, secrets *cluster.Secrets, o *buildSeedOptions) ([]seedJob, error) {
	if o.generic {
		nc, err := cluster.GenericWorkerConfig(c, secrets)
		if err != nil {
			return nil, err
		}
		return []seedJob{{name: genericName, nc: nc}}, nil
	}
	switch o.role {
	case "", cluster.RoleEtcd, cluster.RoleControlPlane, cluster.RoleWorker:
	default:
		return nil, fmt.Errorf("--role %q: use etcd, control-plane or worker", o.role)
	}
	for _, n := range o.nodes {
		if _, ok := c.Host(n); !ok {
			return nil, fmt.Errorf("--node %s: no such host in the cluster file", n)
		}
	}
	var jobs []seedJob
	for _, h := range c.Spec.Hosts {
		if len(o.nodes) > 0 && !slices.Contains(o.nodes, h.Name) {
			continue
		}
		roles := c.HostRoles(h.Name)
		if len(roles) == 0 || (o.role != "" && !slices.Contains(roles, o.role)) {
			continue
		}
		nc, err := cluster.NodeConfigFor(c, secrets, h.Name)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, seedJob{name: h.Name, nc: nc})
	}
	if len(jobs) == 0 {
		return nil, errors.New("no host matches --node/--role; nothing to build")
	}
	return jobs, nil
}
