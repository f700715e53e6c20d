package systemd

import (
	"fmt"
	"strings"
)

// Paths shared by the unit, the seed and the agent.
const (
	UnitName       = "ksboot-bootstrap.service"
	UnitPath       = "/etc/systemd/system/" + UnitName
	AnnounceName   = "ksboot-announce.service"
	AnnouncePath   = "/etc/systemd/system/" + AnnounceName
	AgentName      = "ksboot-agent.service"
	AgentUnitPath  = "/etc/systemd/system/" + AgentName
	AgentPath      = "/usr/local/bin/ksboot"
	NodeConfigPath = "/etc/ksboot/node.yaml"
	StateDir       = "/var/lib/ksboot"
	CompleteMarker = StateDir + "/bootstrap.complete"
	FailedMarker   = StateDir + "/bootstrap.failed"
)

// Unit is a systemd unit file as ordered sections of ordered directives. Order is kept because
// humans read these files and because repeated keys (After=, Environment=) are meaningful.
type Unit struct {
	Sections []Section
}

// Section is one [Name] block.
type Section struct {
	Name       string
	Directives []Directive
	Comment    string
}

// Directive is one Key=Value line.
type Directive struct {
	Key, Value string
}

// String renders the unit in systemd's syntax.
func (u Unit) String() string {
	var b strings.Builder
	for i, s := range u.Sections {
		if i > 0 {
			b.WriteString("\n")
		}
		if s.Comment != "" {
			for _, line := range strings.Split(s.Comment, "\n") {
				fmt.Fprintf(&b, "# %s\n", line)
			}
		}
		fmt.Fprintf(&b, "[%s]\n", s.Name)
		for _, d := range s.Directives {
			fmt.Fprintf(&b, "%s=%s\n", d.Key, d.Value)
		}
	}
	return b.String()
}

// BootstrapUnit is ksboot-bootstrap.service: the first-boot service that runs the node agent.
//
// It starts after the network is online. On the first boot the seed starts it with --no-block
// from cloud-init's runcmd, so cloud-init never waits on it. It is enabled for multi-user.target
// so that a reboot in the middle of bootstrapping resumes it; it must therefore not be ordered
// after cloud-final.service, which is itself ordered after multi-user.target: systemd breaks
// that cycle by dropping this unit's start job, and the node never resumes (Scenario 2 of the
// e2e suite, run 16: a control plane reset during install stayed idle). The condition
// on the completion marker makes it a no-op forever after success. Restart=on-failure retries a
// failed phase after RestartSec=30s. systemd 252 on Debian 12 has no RestartSteps=, so the agent
// itself lengthens the pause when the same phase fails on consecutive runs: it counts them in
// /var/lib/ksboot/status.json and, on start, waits so that the pause from a failure to the next
// attempt is 30 s (RestartSec alone) after the first, then 1, 2, 4 and 8 min, at most 10 min
// (bootstrap.RetryDelay); success resets the count. The unit therefore keeps a short fixed
// RestartSec.
func BootstrapUnit(clusterName string) Unit {
	return Unit{Sections: []Section{
		{
			Comment: "Written by ksboot build-seed. Bootstraps this node into the Kubernetes cluster\n" +
				"\"" + clusterName + "\"; status: ksboot agent status, logs: journalctl -u " + UnitName,
			Name: "Unit",
			Directives: []Directive{
				{"Description", fmt.Sprintf("ksboot node bootstrap (join cluster %s)", clusterName)},
				{"Wants", "network-online.target"},
				{"After", "network-online.target"},
				{"ConditionPathExists", "!" + CompleteMarker},
				{"ConditionPathExists", NodeConfigPath},
				{"StartLimitIntervalSec", "0"},
			},
		},
		{
			Name: "Service",
			Directives: []Directive{
				{"Type", "exec"},
				{"ExecStart", AgentPath + " agent run --config " + NodeConfigPath},
				{"Restart", "on-failure"},
				{"RestartSec", "30s"},
				{"StandardOutput", "journal+console"},
				{"StandardError", "journal+console"},
				{"SyslogIdentifier", "ksboot"},
				{"Environment", "HOME=/root"},
			},
		},
		{
			Name:       "Install",
			Directives: []Directive{{"WantedBy", "multi-user.target"}},
		},
	}}
}

// AnnounceUnit is ksboot-announce.service: it announces the node over mDNS (its phase from
// status.json, and on control planes the API address) for as long as the machine runs. It is
// separate from the bootstrap unit because the announcement must outlive bootstrapping: workers
// booted months later find the control plane through it, and `ksboot watch` shows finished nodes.
func AnnounceUnit(clusterName string) Unit {
	return Unit{Sections: []Section{
		{
			Comment: "Written by ksboot build-seed. Announces this node of cluster \"" + clusterName + "\" on the local\n" +
				"network (mDNS, _ksboot._tcp) so that other nodes and `ksboot watch` can see it.",
			Name: "Unit",
			Directives: []Directive{
				{"Description", fmt.Sprintf("ksboot node announcement (cluster %s)", clusterName)},
				{"Wants", "network-online.target"},
				{"After", "network-online.target"},
				{"ConditionPathExists", NodeConfigPath},
			},
		},
		{
			Name: "Service",
			Directives: []Directive{
				{"Type", "exec"},
				{"ExecStart", AgentPath + " agent announce --config " + NodeConfigPath},
				{"Restart", "always"},
				{"RestartSec", "10s"},
				{"SyslogIdentifier", "ksboot-announce"},
			},
		},
		{
			Name:       "Install",
			Directives: []Directive{{"WantedBy", "multi-user.target"}},
		},
	}}
}

// AgentUnit is ksboot-agent.service: the day-two agent (`ksboot agent serve`). Once the node
// has joined it follows its own Node with the kubelet's credentials and carries out what is
// asked of it there (the reset of `ksboot node delete`); before that it waits for them. It is
// separate from the bootstrap unit, which ends when the node is done, and from the announce
// unit, which a reset stops. After a reset its condition keeps it from starting again: the
// reset removes the node config.
func AgentUnit(clusterName string) Unit {
	return Unit{Sections: []Section{
		{
			Comment: "Written by ksboot build-seed. Follows this node's Node object in cluster \"" + clusterName + "\" and\n" +
				"carries out the requests made there (ksboot node delete); logs: journalctl -u " + AgentName,
			Name: "Unit",
			Directives: []Directive{
				{"Description", fmt.Sprintf("ksboot node agent (cluster %s)", clusterName)},
				{"Wants", "network-online.target"},
				{"After", "network-online.target"},
				{"ConditionPathExists", NodeConfigPath},
			},
		},
		{
			Name: "Service",
			Directives: []Directive{
				{"Type", "exec"},
				{"ExecStart", AgentPath + " agent serve --config " + NodeConfigPath},
				{"Restart", "always"},
				{"RestartSec", "30s"},
				{"StandardOutput", "journal+console"},
				{"StandardError", "journal+console"},
				{"SyslogIdentifier", "ksboot-agent"},
			},
		},
		{
			Name:       "Install",
			Directives: []Directive{{"WantedBy", "multi-user.target"}},
		},
	}}
}
