package osconfig

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/cluster"
)

// Files ksboot owns on the node.
const (
	ModulesFile   = "/etc/modules-load.d/ksboot-kubernetes.conf"
	SysctlFile    = "/etc/sysctl.d/99-ksboot-kubernetes.conf"
	TimesyncdFile = "/etc/systemd/timesyncd.conf.d/ksboot.conf"
)

// Options describe the node being prepared.
type Options struct {
	Root     host.Root
	Exec     host.Runner
	Config   *cluster.NodeConfig
	NodeName string
	Logger   *slog.Logger
	Console  io.Writer
}

// Run applies every step in order.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	for _, step := range []struct {
		name string
		fn   func(context.Context, Options) error
	}{
		{"hostname", Hostname},
		{"hosts", func(ctx context.Context, o Options) error { return Hosts(o.Root, HostsEntries(o.Config, "")) }},
		{"swap", Swap},
		{"modules", Modules},
		{"sysctl", Sysctl},
		{"time", TimeSync},
		{"firewall", Firewall},
	} {
		if err := step.fn(ctx, o); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
		o.Logger.Debug("os step done", "step", step.name)
	}
	return nil
}

// Hostname sets the node's host name now and for later boots.
func Hostname(ctx context.Context, o Options) error {
	if _, err := o.Root.WriteFile("/etc/hostname", []byte(o.NodeName+"\n"), 0o644); err != nil {
		return err
	}
	if _, err := o.Exec.Run(ctx, host.Cmd{Name: "hostname", Args: []string{o.NodeName}}); err != nil {
		return err
	}
	return nil
}

// HostsEntries lists the /etc/hosts lines for the cluster: every host with a static address
// (KubeKey writes "<ip> <name>.<clusterName> <name>") and the control-plane endpoint domain
// mapped to endpointIP, or to the endpoint address / single control plane when known statically.
func HostsEntries(nc *cluster.NodeConfig, endpointIP string) []string {
	spec := nc.Cluster.Spec
	var lines []string
	for _, h := range spec.Hosts {
		if h.Address == "" {
			continue
		}
		ip, _, _ := strings.Cut(h.Address, "/")
		lines = append(lines, fmt.Sprintf("%s %s.%s %s", ip, h.Name, spec.Kubernetes.ClusterName, h.Name))
	}
	if endpointIP == "" {
		endpointIP = spec.ControlPlaneEndpoint.Address
	}
	if endpointIP == "" && len(spec.RoleGroups.ControlPlane) == 1 {
		if h, ok := nc.Cluster.Host(spec.RoleGroups.ControlPlane[0]); ok && h.Address != "" {
			endpointIP, _, _ = strings.Cut(h.Address, "/")
		}
	}
	if endpointIP != "" {
		lines = append(lines, fmt.Sprintf("%s %s", endpointIP, spec.ControlPlaneEndpoint.Domain))
	}
	return lines
}

// Hosts writes the managed block of /etc/hosts; the rest of the file stays as it is.
func Hosts(root host.Root, lines []string) error {
	old, err := root.ReadFile("/etc/hosts")
	if err != nil {
		old = []byte("127.0.0.1 localhost\n")
	}
	_, err = root.WriteFile("/etc/hosts", []byte(host.ManagedBlock(string(old), strings.Join(lines, "\n"))), 0o644)
	return err
}

// Swap turns swap off now and comments out swap entries in /etc/fstab (kubelet refuses swap by
// default).
func Swap(ctx context.Context, o Options) error {
	if _, err := o.Exec.Run(ctx, host.Cmd{Name: "swapoff", Args: []string{"-a"}}); err != nil {
		return err
	}
	data, err := o.Root.ReadFile("/etc/fstab")
	if err != nil {
		return nil // no fstab, nothing to keep off
	}
	lines := strings.Split(string(data), "\n")
	changed := false
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 3 && !strings.HasPrefix(f[0], "#") && f[2] == "swap" {
			lines[i] = "# disabled by ksboot (kubelet needs swap off): " + l
			changed = true
		}
	}
	if changed {
		_, err = o.Root.WriteFile("/etc/fstab", []byte(strings.Join(lines, "\n")), 0o644)
	}
	return err
}

// KernelModules are the modules Kubernetes networking needs; IPVS mode needs its own.
// nf_conntrack is needed in every mode: kube-proxy sets nf_conntrack_max and the conntrack
// timeouts at start and exits when /proc/sys/net/netfilter does not exist yet. Found by the
// e2e suite: on a fresh control plane nothing else had loaded the module, so kube-proxy
// crash-looped, Service IPs never worked and Flannel could not reach the API.
func KernelModules(proxyMode string) []string {
	mods := []string{"overlay", "br_netfilter", "nf_conntrack"}
	if proxyMode == "ipvs" {
		mods = append(mods, "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh")
	}
	return mods
}

// Modules loads the kernel modules now and at every boot.
func Modules(ctx context.Context, o Options) error {
	mods := KernelModules(o.Config.Cluster.Spec.Kubernetes.ProxyMode)
	body := "# Written by ksboot: kernel modules Kubernetes needs.\n" + strings.Join(mods, "\n") + "\n"
	if _, err := o.Root.WriteFile(ModulesFile, []byte(body), 0o644); err != nil {
		return err
	}
	for _, m := range mods {
		if _, err := o.Exec.Run(ctx, host.Cmd{Name: "modprobe", Args: []string{m}}); err != nil {
			return fmt.Errorf("loading kernel module %s: %w", m, err)
		}
	}
	return nil
}

// Sysctls are the kernel settings Kubernetes networking needs.
var Sysctls = [][2]string{
	{"net.ipv4.ip_forward", "1"},
	{"net.bridge.bridge-nf-call-iptables", "1"},
	{"net.bridge.bridge-nf-call-ip6tables", "1"},
}

// Sysctl writes the settings and applies them.
func Sysctl(ctx context.Context, o Options) error {
	var b strings.Builder
	b.WriteString("# Written by ksboot: kernel settings Kubernetes needs.\n")
	for _, kv := range Sysctls {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
	}
	if _, err := o.Root.WriteFile(SysctlFile, []byte(b.String()), 0o644); err != nil {
		return err
	}
	_, err := o.Exec.Run(ctx, host.Cmd{Name: "sysctl", Args: []string{"-p", SysctlFile}})
	return err
}

// TimeSync enables time synchronisation: chrony when it is installed, else systemd-timesyncd
// with the cluster's NTP servers. When neither exists it warns: certificates need correct time.
func TimeSync(ctx context.Context, o Options) error {
	servers := o.Config.Cluster.Spec.NTP.Servers
	if tz := o.Config.Cluster.Spec.NTP.Timezone; tz != "" {
		if _, err := o.Exec.Run(ctx, host.Cmd{Name: "timedatectl", Args: []string{"set-timezone", tz}}); err != nil {
			return err
		}
	}
	for _, unit := range []string{"chrony", "chronyd"} {
		if o.Root.Exists("/lib/systemd/system/"+unit+".service") || o.Root.Exists("/usr/lib/systemd/system/"+unit+".service") {
			if len(servers) > 0 {
				o.Logger.Warn("chrony is installed: add the cluster's NTP servers to its configuration yourself", "servers", strings.Join(servers, ","))
			}
			_, err := o.Exec.Run(ctx, host.Cmd{Name: "systemctl", Args: []string{"enable", "--now", unit}})
			return err
		}
	}
	if o.Root.Exists("/lib/systemd/system/systemd-timesyncd.service") || o.Root.Exists("/usr/lib/systemd/system/systemd-timesyncd.service") {
		if len(servers) > 0 {
			body := "# Written by ksboot.\n[Time]\nNTP=" + strings.Join(servers, " ") + "\n"
			if _, err := o.Root.WriteFile(TimesyncdFile, []byte(body), 0o644); err != nil {
				return err
			}
		}
		_, err := o.Exec.Run(ctx, host.Cmd{Name: "systemctl", Args: []string{"enable", "--now", "systemd-timesyncd"}})
		return err
	}
	o.Logger.Warn("no time synchronisation service (chrony or systemd-timesyncd) is installed; keep the clock right, certificates depend on it")
	fmt.Fprintln(o.Console, "ksboot: warning: no chrony or systemd-timesyncd: keep this machine's clock right")
	return nil
}

// FirewallPorts are the ports to open for a node of these roles and CNI.
func FirewallPorts(roles []string, plugin string) []string {
	ports := []string{"10250/tcp", "30000-32767/tcp"}
	if slices.Contains(roles, cluster.RoleControlPlane) {
		ports = append(ports, "6443/tcp", "2379-2380/tcp", "10257/tcp", "10259/tcp")
	}
	switch plugin {
	case "flannel":
		ports = append(ports, "8472/udp")
	case "calico":
		ports = append(ports, "179/tcp", "4789/udp", "5473/tcp")
	}
	return ports
}

// Firewall opens the cluster's ports in firewalld or ufw when one is active, and otherwise
// changes nothing (it never disables a firewall).
func Firewall(ctx context.Context, o Options) error {
	ports := FirewallPorts(o.Config.Node.Roles, o.Config.Cluster.Spec.Network.Plugin)
	if out, err := o.Exec.Run(ctx, host.Cmd{Name: "systemctl", Args: []string{"is-active", "firewalld"}}); err == nil && strings.TrimSpace(string(out)) == "active" {
		for _, p := range ports {
			if _, err := o.Exec.Run(ctx, host.Cmd{Name: "firewall-cmd", Args: []string{"--permanent", "--add-port=" + p}}); err != nil {
				return err
			}
		}
		_, err := o.Exec.Run(ctx, host.Cmd{Name: "firewall-cmd", Args: []string{"--reload"}})
		return err
	}
	if out, err := o.Exec.Run(ctx, host.Cmd{Name: "systemctl", Args: []string{"is-active", "ufw"}}); err == nil && strings.TrimSpace(string(out)) == "active" {
		for _, p := range ports {
			if _, err := o.Exec.Run(ctx, host.Cmd{Name: "ufw", Args: []string{"allow", strings.Replace(p, "-", ":", 1)}}); err != nil {
				return err
			}
		}
	}
	return nil
}
