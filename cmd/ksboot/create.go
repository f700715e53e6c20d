package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/versions"
)

type createConfigOptions struct {
	file              string
	name              string
	kubernetesVersion string
	kubesphereVersion string
	fromKubeKey       string
	force             bool
}

func newCreateCmd(s *streams) *cobra.Command {
	create := &cobra.Command{Use: "create", Short: "Create a cluster file"}
	o := &createConfigOptions{}
	cfg := &cobra.Command{
		Use:   "config",
		Short: "Write a commented cluster file (or import a KubeKey one)",
		Long: `Write a commented ksboot cluster file to edit, like KubeKey's "kk create config".
With --from-kubekey, convert a KubeKey config-sample.yaml instead: hosts, roleGroups (including
the old "master" name), controlPlaneEndpoint, kubernetes, network, registry and KubeSphere's
ClusterConfiguration carry over; SSH users, passwords and keys are dropped (nodes need none).`,
		Example: `  ksboot create config --with-kubernetes v1.26.5 --with-kubesphere v3.4.0 -f kubesphere-v3.4.0.yaml
  ksboot create config --from-kubekey config-sample.yaml -f cluster.yaml`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runCreateConfig(s, o) },
	}
	f := cfg.Flags()
	f.StringVarP(&o.file, "filename", "f", "config-sample.yaml", "cluster file to write")
	f.StringVar(&o.name, "name", "sample", "cluster name")
	f.StringVar(&o.kubernetesVersion, "with-kubernetes", "", "Kubernetes version (default: the newest that --with-kubesphere supports, else "+cluster.DefaultKubernetesVersion+"; supported: "+versions.Range()+")")
	f.StringVar(&o.kubesphereVersion, "with-kubesphere", "", "enable KubeSphere at this version (e.g. v3.4.1, v4.1.3)")
	f.StringVar(&o.fromKubeKey, "from-kubekey", "", "import this KubeKey cluster file")
	f.BoolVar(&o.force, "force", false, "overwrite an existing file")
	create.AddCommand(cfg)
	return create
}

func runCreateConfig(s *streams, o *createConfigOptions) error {
	if _, err := os.Stat(o.file); err == nil && !o.force {
		return fmt.Errorf("%s already exists; use --force to overwrite it", o.file)
	}
	var c *cluster.Cluster
	if o.fromKubeKey != "" {
		data, err := os.ReadFile(o.fromKubeKey)
		if err != nil {
			return fmt.Errorf("reading KubeKey file: %w", err)
		}
		var notes []string
		c, notes, err = cluster.FromKubeKey(o.fromKubeKey, data)
		if err != nil {
			return err
		}
		for _, n := range notes {
			fmt.Fprintf(s.err, "warning: %s: %s\n", o.fromKubeKey, n)
		}
	} else {
		k8s := o.kubernetesVersion
		if k8s == "" && o.kubesphereVersion != "" {
			// As KubeKey does: without an explicit Kubernetes version, take the newest that
			// the chosen KubeSphere release supports.
			v, err := cluster.KubernetesFor(o.kubesphereVersion)
			if err != nil {
				return err
			}
			k8s = v
			fmt.Fprintf(s.err, "Kubernetes %s: the newest release ksboot installs for KubeSphere %s\n", k8s, o.kubesphereVersion)
		}
		c = cluster.Sample(cluster.SampleOptions{Name: o.name, KubernetesVersion: k8s, KubeSphereVersion: o.kubesphereVersion})
	}
	data, err := cluster.MarshalCommented(c)
	if err != nil {
		return err
	}
	// Check what we are about to write with the same parser users will run it through.
	if _, ps, err := cluster.Parse(o.file, data); err != nil {
		printProblems(s.err, ps)
		return fmt.Errorf("the generated file is not valid; fix the input and retry: %w", err)
	} else {
		printProblems(s.err, ps.Warnings())
	}
	if err := state.WriteFileAtomic(o.file, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "wrote %s; next: ksboot validate -f %s && ksboot build-seed -f %s\n", o.file, o.file, o.file)
	return nil
}
