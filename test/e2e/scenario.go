package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ksboot/ksboot/versions"
)

// Scenario is one black-box run, read from scenarios/<name>.yaml.
type Scenario struct {
	Name    string `yaml:"name"`
	Summary string `yaml:"summary"`
	// Clusters are cluster files by a short name; each gets its own directory, so its own
	// secrets (CA): two clusters here are two clusters, even with one metadata.name.
	Clusters map[string]string `yaml:"clusters"`
	// ClustersFrom takes the clusters of another scenario in the same directory, by name,
	// instead of writing them again (single-node runs mdns-cluster's cluster file alone).
	ClustersFrom string `yaml:"clustersFrom"`
	// KubernetesVersion, when set, replaces spec.kubernetes.version in every cluster file:
	// the same scenario at another release of the version matrix (single-node-1.26 is
	// single-node at the KubeSphere guide's v1.26.5). The guests' bundle holds the scenario's
	// release either way (Scenario.Version).
	KubernetesVersion string `yaml:"kubernetesVersion"`
	// KubernetesPatches, when set, replaces spec.kubernetes.patches in every cluster file, as a
	// user of that release writes them: a patch must fit the release's manifests (kubeadm
	// v1.26 gives etcd and kube-scheduler no readiness probe, and a patch setting one makes a
	// probe without a handler that the kubelet refuses).
	KubernetesPatches yaml.Node `yaml:"kubernetesPatches"`
	// Seeds are `ksboot build-seed` runs: Args are added to -f <cluster> -o <dir>.
	Seeds []Seed `yaml:"seeds"`
	// Guests are the machines, all on one private segment (10.77.0.0/24, the host side at
	// .1, DHCP from .100 for seeds without network-config).
	Guests []GuestSpec `yaml:"guests"`
	// Baseline, when set, boots the guests from hand-written cloud-init instead of ksboot
	// seeds (see baseline.go): the reference a ksboot run is compared with.
	Baseline *Baseline `yaml:"baseline"`
	// Deadline bounds the whole run after the last guest is switched on.
	Deadline Duration `yaml:"deadline"`
	Expect   Expect   `yaml:"expect"`

	// version is the Kubernetes release of every cluster file, after KubernetesVersion.
	version string
	// loadBalancer is the internal load balancer some cluster file deploys
	// (spec.controlPlaneEndpoint.internalLoadbalancer), whose image the bundle must carry.
	loadBalancer string
}

// Version is the Kubernetes release the scenario installs: its cluster files' (one for all).
func (s *Scenario) Version() string { return s.version }

// Bundle names the bundle the scenario's guests boot with: its Kubernetes release, the
// internal load balancer whose image it adds and the release an upgrade moves to
// ("v1.26.5", "v1.26.5+kube-vip", "v1.26.5>v1.27.16").
func (s *Scenario) Bundle() string {
	b := s.version
	if s.loadBalancer != "" {
		b += "+" + s.loadBalancer
	}
	if s.Expect.Upgrade != nil {
		b += ">" + s.Expect.Upgrade.To
	}
	return b
}

// UpgradeTo is the release the scenario upgrades to, or "".
func (s *Scenario) UpgradeTo() string {
	if s.Expect.Upgrade == nil {
		return ""
	}
	return s.Expect.Upgrade.To
}

// Seed is one build-seed run; its output file is <Name>.iso.
type Seed struct {
	Name    string   `yaml:"name"`
	Cluster string   `yaml:"cluster"`
	Args    []string `yaml:"args"`
}

// GuestSpec is one machine.
type GuestSpec struct {
	Name    string `yaml:"name"`
	Seed    string `yaml:"seed"`
	MAC     string `yaml:"mac"`
	CPUs    int    `yaml:"cpus"`
	MemMiB  int    `yaml:"memMiB"`
	DiskMiB int    `yaml:"diskMiB"`
	// TBMiB is qemu's translated-code cache (vm.Options.TBMiB); 0 is the vm package's default.
	TBMiB int `yaml:"tbMiB"`
	// Nice is qemu's host scheduling niceness (vm.Guest.Renice): from power-on, or, with
	// NiceOn, from the first time the guest's serial log matches NiceOn.
	Nice   int    `yaml:"nice"`
	NiceOn string `yaml:"niceOn"`
	// StartAfter switches the guest on this long after the first one.
	StartAfter Duration `yaml:"startAfter"`
	// ResetOn hard-resets the guest (power cut, then on again) the first time its serial
	// log matches this expression.
	ResetOn string `yaml:"resetOn"`
}

// Expect is what must be true for the scenario to pass.
type Expect struct {
	// Cluster, when set, must form: every guest in Nodes is a Ready Node, every pod in
	// kube-system and kube-flannel is Running and ready, and `ksboot watch` shows each of
	// those guests' nodes done.
	Cluster *ClusterExpect `yaml:"cluster"`
	// Fails are guests that must fail, each saying why.
	Fails []FailExpect `yaml:"fails"`
	// Failover, once Cluster has formed, switches a control plane off and checks that the
	// cluster still serves through its control-plane endpoint.
	Failover *FailoverExpect `yaml:"failover"`
	// DeleteNode, once Cluster has formed, removes a worker with `ksboot node delete` and
	// checks that its machine resets itself and, switched on again with its seed, rejoins.
	DeleteNode *DeleteNodeExpect `yaml:"deleteNode"`
	// Upgrade, once Cluster has formed, upgrades it with `ksboot upgrade --to` and checks
	// that every Node is Ready at the new release and that kube-system lost no pod. The
	// guests' bundle then carries both releases.
	Upgrade *UpgradeExpect `yaml:"upgrade"`
}

// UpgradeExpect is the rolling upgrade check: `ksboot upgrade --to To`, then within Within
// every node of the expected cluster done and a Ready Node with a kubelet of To, the API
// server at To, and every kube-system pod of before the upgrade (by its static pod, DaemonSet
// and node, or Deployment) Running and ready again.
type UpgradeExpect struct {
	To     string   `yaml:"to"`
	Within Duration `yaml:"within"`
}

// DeleteNodeExpect is the node removal check: `ksboot node delete` of Guest's Node (a worker
// of the expected cluster) must succeed with the machine resetting itself; then the guest is
// power-cycled with the same seed and must be a Ready Node again within Within.
type DeleteNodeExpect struct {
	Guest  string   `yaml:"guest"`
	Within Duration `yaml:"within"`
}

// FailoverExpect is the high-availability check: PowerOff (a control plane of the expected
// cluster) loses its power; then, within Within, the API server must answer through
// spec.controlPlaneEndpoint.address, and a new pod whose nodeSelector names the guest Schedule
// must be scheduled there and run.
type FailoverExpect struct {
	PowerOff string   `yaml:"powerOff"`
	Schedule string   `yaml:"schedule"`
	Within   Duration `yaml:"within"`
}

// ClusterExpect names the cluster (a key of Scenario.Clusters) and the guests that form it.
type ClusterExpect struct {
	Cluster string   `yaml:"cluster"`
	Nodes   []string `yaml:"nodes"`
	// Watch says whether `ksboot watch` must show the nodes done (false for a baseline,
	// whose guests run no ksboot).
	Watch bool `yaml:"watch"`
}

// FailExpect is a guest that must report a failure on its console (and, with Watch, in
// `ksboot watch`) within Within of the scenario's start, and never become a Node.
type FailExpect struct {
	Guest   string   `yaml:"guest"`
	Console string   `yaml:"console"`
	Watch   string   `yaml:"watch"`
	Within  Duration `yaml:"within"`
	// NotJoined names the cluster the guest must not have joined.
	NotJoined string `yaml:"notJoined"`
}

// Baseline is the hand-written bootstrap: a shell script per role, run by cloud-init.
type Baseline struct {
	// Cluster supplies the addresses and the secrets (token, CA) the scripts use.
	Cluster string `yaml:"cluster"`
	// Init is the guest that runs kubeadm init; the others join it.
	Init string `yaml:"init"`
}

// Duration is a time.Duration written as "45m" in YAML.
type Duration struct{ time.Duration }

// UnmarshalYAML reads "45m", "90s", ….
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 45m", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// LoadScenario reads and checks a scenario file; unknown fields are errors.
func LoadScenario(path string) (*Scenario, error) {
	s, err := decodeScenario(path)
	if err != nil {
		return nil, err
	}
	if s.ClustersFrom != "" {
		if len(s.Clusters) > 0 {
			return nil, fmt.Errorf("%s: clustersFrom %q and clusters: give one or the other", path, s.ClustersFrom)
		}
		// Decoded, not loaded: one level only, so a file naming itself cannot loop.
		other, err := decodeScenario(filepath.Join(filepath.Dir(path), s.ClustersFrom+".yaml"))
		if err != nil {
			return nil, fmt.Errorf("%s: clustersFrom %q: %w", path, s.ClustersFrom, err)
		}
		if other.ClustersFrom != "" {
			return nil, fmt.Errorf("%s: clustersFrom %q: that scenario takes its clusters from %q; name that one", path, s.ClustersFrom, other.ClustersFrom)
		}
		s.Clusters = other.Clusters
	}
	if err := s.setVersion(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func decodeScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

var macPattern = regexp.MustCompile(`^52:54:00(:[0-9a-f]{2}){3}$`)

func (s *Scenario) check() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if s.Name == "" || s.Deadline.Duration <= 0 {
		bad("name and deadline are required")
	}
	seeds := map[string]bool{}
	for _, sd := range s.Seeds {
		if _, ok := s.Clusters[sd.Cluster]; !ok {
			bad("seed %s: unknown cluster %q", sd.Name, sd.Cluster)
		}
		seeds[sd.Name] = true
	}
	guests := map[string]bool{}
	for _, g := range s.Guests {
		if guests[g.Name] {
			bad("guest %s: listed twice", g.Name)
		}
		guests[g.Name] = true
		if !seeds[g.Seed] && s.Baseline == nil {
			bad("guest %s: unknown seed %q", g.Name, g.Seed)
		}
		if !macPattern.MatchString(g.MAC) {
			bad("guest %s: mac %q: want 52:54:00:xx:xx:xx, lower case", g.Name, g.MAC)
		}
		if g.Nice < 0 || g.Nice > 19 {
			bad("guest %s: nice %d is not between 0 and 19", g.Name, g.Nice)
		}
		if g.NiceOn != "" {
			if _, err := regexp.Compile(g.NiceOn); err != nil {
				bad("guest %s: niceOn: %v", g.Name, err)
			}
			if g.Nice == 0 {
				bad("guest %s: niceOn without nice", g.Name)
			}
		}
		if g.ResetOn != "" {
			if _, err := regexp.Compile(g.ResetOn); err != nil {
				bad("guest %s: resetOn: %v", g.Name, err)
			}
		}
	}
	if c := s.Expect.Cluster; c != nil {
		if _, ok := s.Clusters[c.Cluster]; !ok {
			bad("expect.cluster: unknown cluster %q", c.Cluster)
		}
		for _, n := range c.Nodes {
			if !guests[n] {
				bad("expect.cluster.nodes: unknown guest %q", n)
			}
		}
	}
	if f := s.Expect.Failover; f != nil {
		c := s.Expect.Cluster
		switch {
		case c == nil:
			bad("expect.failover: needs expect.cluster, the cluster that must survive")
		case !slices.Contains(c.Nodes, f.PowerOff) || !slices.Contains(c.Nodes, f.Schedule) || f.PowerOff == f.Schedule:
			bad("expect.failover: powerOff %q and schedule %q must be two guests of expect.cluster.nodes", f.PowerOff, f.Schedule)
		case f.Within.Duration <= 0:
			bad("expect.failover: within is required")
		}
	}
	if d := s.Expect.DeleteNode; d != nil {
		switch c := s.Expect.Cluster; {
		case c == nil || !slices.Contains(c.Nodes, d.Guest):
			bad("expect.deleteNode: guest %q must be a node of expect.cluster", d.Guest)
		case d.Within.Duration <= 0:
			bad("expect.deleteNode: within is required")
		case s.Expect.Failover != nil:
			bad("expect.deleteNode and expect.failover: one check after forming per scenario")
		}
	}
	if u := s.Expect.Upgrade; u != nil {
		switch {
		case s.Expect.Cluster == nil:
			bad("expect.upgrade: needs expect.cluster, the cluster to upgrade")
		case u.Within.Duration <= 0:
			bad("expect.upgrade: within is required")
		case s.Expect.Failover != nil || s.Expect.DeleteNode != nil:
			bad("expect.upgrade: one check after forming per scenario")
		}
		if _, err := versions.Lookup(u.To); err != nil {
			bad("expect.upgrade.to: %v", err)
		}
	}
	for _, f := range s.Expect.Fails {
		if !guests[f.Guest] {
			bad("expect.fails: unknown guest %q", f.Guest)
		}
		for _, re := range []string{f.Console, f.Watch} {
			if _, err := regexp.Compile(re); err != nil {
				bad("expect.fails %s: %v", f.Guest, err)
			}
		}
	}
	if b := s.Baseline; b != nil {
		if _, ok := s.Clusters[b.Cluster]; !ok || !guests[b.Init] {
			bad("baseline: unknown cluster %q or guest %q", b.Cluster, b.Init)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// Scenarios lists the scenario files in dir by name.
func Scenarios(dir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), ".yaml")] = f
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenarios in %s", dir)
	}
	return out, nil
}

// guest returns the spec of the named guest.
func (s *Scenario) guest(name string) GuestSpec {
	i := slices.IndexFunc(s.Guests, func(g GuestSpec) bool { return g.Name == name })
	return s.Guests[i]
}

// setVersion applies KubernetesVersion to every cluster file and records the one release they
// all install: the guests share one bundle, which holds one release.
func (s *Scenario) setVersion() error {
	clusters := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(s.Clusters)) {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(s.Clusters[name]), &doc); err != nil {
			return fmt.Errorf("cluster %s: %w", name, err)
		}
		v := yamlPath(&doc, "spec", "kubernetes", "version")
		if v == nil || v.Kind != yaml.ScalarNode {
			return fmt.Errorf("cluster %s: no spec.kubernetes.version (the scenario's bundle needs one release)", name)
		}
		edited := false
		if s.KubernetesVersion != "" && v.Value != s.KubernetesVersion {
			v.Value = s.KubernetesVersion
			edited = true
		}
		if s.KubernetesPatches.Kind != 0 {
			if s.KubernetesPatches.Kind != yaml.SequenceNode {
				return fmt.Errorf("kubernetesPatches: want a list of patches, as spec.kubernetes.patches")
			}
			k := yamlPath(&doc, "spec", "kubernetes")
			if p := yamlPath(k, "patches"); p != nil {
				*p = s.KubernetesPatches
			} else {
				k.Content = append(k.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "patches"}, &s.KubernetesPatches)
			}
			edited = true
		}
		if edited {
			out, err := yaml.Marshal(&doc)
			if err != nil {
				return fmt.Errorf("cluster %s: %w", name, err)
			}
			clusters[name] = string(out)
		} else {
			clusters[name] = s.Clusters[name]
		}
		if lb := yamlPath(&doc, "spec", "controlPlaneEndpoint", "internalLoadbalancer"); lb != nil && lb.Value != "" {
			switch {
			case lb.Value != "kube-vip":
				// bundle.Options.LoadBalancer: hack/build-images.sh says why.
				return fmt.Errorf("cluster %s: internalLoadbalancer %q: the test bundle can carry only kube-vip's image (haproxy has no Go module to build it from)", name, lb.Value)
			case s.loadBalancer != "" && s.loadBalancer != lb.Value:
				return fmt.Errorf("cluster %s: internalLoadbalancer %s, another cluster %s: one bundle", name, lb.Value, s.loadBalancer)
			}
			s.loadBalancer = lb.Value
		}
		if s.version != "" && v.Value != s.version {
			return fmt.Errorf("cluster %s installs Kubernetes %s, another cluster %s: one bundle holds one release", name, v.Value, s.version)
		}
		s.version = v.Value
	}
	if _, err := versions.Lookup(s.version); err != nil {
		return fmt.Errorf("kubernetes version: %w", err)
	}
	s.Clusters = clusters
	return nil
}

// yamlPath returns the value node at a path of mapping keys, or nil.
func yamlPath(n *yaml.Node, keys ...string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for _, k := range keys {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}
