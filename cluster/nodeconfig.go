package cluster

import (
	"fmt"
	"os"
	"slices"

	"gopkg.in/yaml.v3"
)

// NodeConfig is /etc/ksboot/node.yaml: what one node needs to bootstrap itself. build-seed writes
// it into the seed; the agent reads it on the node. It holds the whole cluster spec (so every node
// agrees on versions, networks and endpoints), the node's identity and only the secrets its role
// needs: control planes get the CA keys, workers get the token and the CA pin, never a key.
type NodeConfig struct {
	APIVersion string      `yaml:"apiVersion"`
	Kind       string      `yaml:"kind"`
	Node       NodeInfo    `yaml:"node"`
	Cluster    Cluster     `yaml:"cluster"`
	Secrets    NodeSecrets `yaml:"secrets"`
}

// NodeInfo says who this node is.
type NodeInfo struct {
	// Name is the host name; empty for a generic worker seed, which derives one on the node.
	Name string `yaml:"name,omitempty"`
	// Roles in role-group order (etcd, control-plane, worker).
	Roles []string `yaml:"roles"`
	// Init is true on the one node that runs kubeadm init.
	Init bool `yaml:"init,omitempty"`
	// ControlPlaneIndex is the node's place in roleGroups.control-plane (joins go in this order);
	// -1 for workers.
	ControlPlaneIndex int `yaml:"controlPlaneIndex"`
	// Generic marks a seed shared by any number of worker machines.
	Generic bool `yaml:"generic,omitempty"`
}

// NodeSecrets is the part of Secrets a node receives. Key fields are empty on workers.
type NodeSecrets struct {
	BootstrapToken    string `yaml:"bootstrapToken"`
	CACertHash        string `yaml:"caCertHash"`
	CACert            string `yaml:"caCert"`
	CAKey             string `yaml:"caKey,omitempty"`
	EtcdCACert        string `yaml:"etcdCACert,omitempty"`
	EtcdCAKey         string `yaml:"etcdCAKey,omitempty"`
	FrontProxyCACert  string `yaml:"frontProxyCACert,omitempty"`
	FrontProxyCAKey   string `yaml:"frontProxyCAKey,omitempty"`
	ServiceAccountKey string `yaml:"serviceAccountKey,omitempty"`
	ServiceAccountPub string `yaml:"serviceAccountPub,omitempty"`
	CertificateKey    string `yaml:"certificateKey,omitempty"`
}

// HasRole reports whether the node has the role.
func (n NodeInfo) HasRole(role string) bool { return slices.Contains(n.Roles, role) }

// IsControlPlane reports whether the node runs the control plane.
func (n NodeInfo) IsControlPlane() bool { return n.HasRole(RoleControlPlane) }

// NodeConfigFor builds the node config of a named host. The cluster must be defaulted and valid.
func NodeConfigFor(c *Cluster, s *Secrets, host string) (*NodeConfig, error) {
	if _, ok := c.Host(host); !ok {
		return nil, fmt.Errorf("host %q is not in spec.hosts", host)
	}
	roles := c.HostRoles(host)
	if len(roles) == 0 {
		return nil, fmt.Errorf("host %q is in no role group", host)
	}
	info := NodeInfo{Name: host, Roles: roles, ControlPlaneIndex: slices.Index(c.Spec.RoleGroups.ControlPlane, host)}
	info.Init = info.ControlPlaneIndex == 0
	return newNodeConfig(c, s, info)
}

// GenericWorkerConfig builds the config of a seed that any number of worker machines can boot.
func GenericWorkerConfig(c *Cluster, s *Secrets) (*NodeConfig, error) {
	return newNodeConfig(c, s, NodeInfo{Roles: []string{RoleWorker}, ControlPlaneIndex: -1, Generic: true})
}

func newNodeConfig(c *Cluster, s *Secrets, info NodeInfo) (*NodeConfig, error) {
	pin, err := s.CAPin()
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	ns := NodeSecrets{BootstrapToken: s.BootstrapToken, CACertHash: pin, CACert: string(s.CACert)}
	if info.IsControlPlane() {
		ns.CAKey = string(s.CAKey)
		ns.EtcdCACert, ns.EtcdCAKey = string(s.EtcdCACert), string(s.EtcdCAKey)
		ns.FrontProxyCACert, ns.FrontProxyCAKey = string(s.FrontProxyCACert), string(s.FrontProxyCAKey)
		ns.ServiceAccountKey, ns.ServiceAccountPub = string(s.ServiceAccountKey), string(s.ServiceAccountPub)
		ns.CertificateKey = s.CertificateKey
	}
	return &NodeConfig{APIVersion: APIVersion, Kind: NodeConfigKind, Node: info, Cluster: *c, Secrets: ns}, nil
}

// Marshal renders the node config as YAML.
func (n *NodeConfig) Marshal() ([]byte, error) {
	out, err := yaml.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("encoding node config: %w", err)
	}
	return out, nil
}

// Redacted returns a copy safe to log: every secret and credential is replaced.
func (n *NodeConfig) Redacted() *NodeConfig {
	r := *n
	r.Cluster = *n.Cluster.Redacted()
	hide := func(s string) string {
		if s == "" {
			return ""
		}
		return "REDACTED"
	}
	r.Secrets = NodeSecrets{
		BootstrapToken: hide(n.Secrets.BootstrapToken), CACertHash: n.Secrets.CACertHash, CACert: n.Secrets.CACert,
		CAKey: hide(n.Secrets.CAKey), EtcdCACert: n.Secrets.EtcdCACert, EtcdCAKey: hide(n.Secrets.EtcdCAKey),
		FrontProxyCACert: n.Secrets.FrontProxyCACert, FrontProxyCAKey: hide(n.Secrets.FrontProxyCAKey),
		ServiceAccountKey: hide(n.Secrets.ServiceAccountKey), ServiceAccountPub: n.Secrets.ServiceAccountPub,
		CertificateKey: hide(n.Secrets.CertificateKey),
	}
	return &r
}

// Redacted returns a copy of the cluster safe to log: registry passwords are replaced.
func (c *Cluster) Redacted() *Cluster {
	r := *c
	if len(c.Spec.Registry.Auths) > 0 {
		r.Spec.Registry.Auths = map[string]Auth{}
		for k, a := range c.Spec.Registry.Auths {
			if a.Password != "" {
				a.Password = "REDACTED"
			}
			r.Spec.Registry.Auths[k] = a
		}
	}
	return &r
}

// LoadNodeConfig reads /etc/ksboot/node.yaml strictly and validates the cluster inside it.
func LoadNodeConfig(path string) (*NodeConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading node config: %w", err)
	}
	return ParseNodeConfig(path, data)
}

// ParseNodeConfig is LoadNodeConfig for bytes already read; name is used in messages.
func ParseNodeConfig(name string, data []byte) (*NodeConfig, error) {
	var n NodeConfig
	src, ps, err := decodeStrict(name, data, &n)
	if err != nil {
		return nil, err
	}
	if n.APIVersion != APIVersion || n.Kind != NodeConfigKind {
		ps = append(ps, src.problem("kind", false, "want apiVersion %s, kind %s", APIVersion, NodeConfigKind))
	}
	SetDefaults(&n.Cluster)
	// The embedded cluster's paths start with "cluster." in this file.
	for _, p := range Validate(&n.Cluster, nil) {
		p.File, p.Field = name, "cluster."+p.Field
		p.Line = src.Line(p.Field)
		ps = append(ps, p)
	}
	if n.Secrets.BootstrapToken == "" || n.Secrets.CACertHash == "" || n.Secrets.CACert == "" {
		ps = append(ps, src.problem("secrets", false, "bootstrapToken, caCertHash and caCert are required"))
	} else if pin, err := CAPinFromPEM([]byte(n.Secrets.CACert)); err != nil {
		ps = append(ps, src.problem("secrets.caCert", false, "%v", err))
	} else if pin != n.Secrets.CACertHash {
		ps = append(ps, src.problem("secrets.caCertHash", false, "does not match secrets.caCert (%s)", pin))
	}
	if !n.Node.Generic && n.Node.Name == "" {
		ps = append(ps, src.problem("node.name", false, "required unless node.generic is true"))
	}
	if err := ps.Err(); err != nil {
		return nil, err
	}
	return &n, nil
}

// Name is the cluster name (metadata.name).
func (c *Cluster) Name() string { return c.Metadata.Name }
