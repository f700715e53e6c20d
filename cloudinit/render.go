package cloudinit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/systemd"
)

// File names inside a NoCloud seed.
const (
	UserDataFile      = "user-data"
	MetaDataFile      = "meta-data"
	NetworkConfigFile = "network-config"
	// AgentFile is the ksboot binary carried on seed media.
	AgentFile = "ksboot"
	// InstallScriptPath is where the seed puts the script that installs the agent on the node.
	InstallScriptPath = "/usr/local/lib/ksboot/install-agent"
)

// Agent says where a node gets the ksboot binary and what its checksum must be.
type Agent struct {
	// SHA256 is the hex digest the node checks before installing the binary.
	SHA256 string
	// URL, when set, is downloaded (PXE/cloud user-data). Empty means the binary is the file
	// "ksboot" on the seed volume (label cidata or CIDATA).
	URL string
}

// Seed is the rendered content of one node's seed. NetworkConfig is nil when the host uses DHCP,
// because NoCloud treats an absent file as "use the image's default" and an empty file is not
// valid network-config.
type Seed struct {
	UserData      []byte
	MetaData      []byte
	NetworkConfig []byte
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Render turns a node config into cloud-init NoCloud files.
func Render(nc *cluster.NodeConfig, agent Agent) (*Seed, error) {
	if !sha256Hex.MatchString(agent.SHA256) {
		return nil, fmt.Errorf("rendering seed: agent checksum %q is not a hex SHA-256", agent.SHA256)
	}
	nodeYAML, err := nc.Marshal()
	if err != nil {
		return nil, err
	}
	unit := systemd.BootstrapUnit(nc.Cluster.Name())
	cc := CloudConfig{
		WriteFiles: []WriteFile{
			{Path: systemd.NodeConfigPath, Content: string(nodeYAML), Owner: "root:root", Permissions: "0600"},
			{Path: systemd.UnitPath, Content: unit.String(), Owner: "root:root", Permissions: "0644"},
			{Path: systemd.AnnouncePath, Content: systemd.AnnounceUnit(nc.Cluster.Name()).String(), Owner: "root:root", Permissions: "0644"},
			{Path: systemd.AgentUnitPath, Content: systemd.AgentUnit(nc.Cluster.Name()).String(), Owner: "root:root", Permissions: "0644"},
			{Path: InstallScriptPath, Content: installScript(agent), Owner: "root:root", Permissions: "0700"},
		},
		RunCmd: [][]string{{InstallScriptPath}},
	}
	var host cluster.Host
	if !nc.Node.Generic {
		host, _ = nc.Cluster.Host(nc.Node.Name)
		cc.Hostname = nc.Node.Name
		cc.PreserveHostname = boolPtr(false)
	}
	spec := nc.Cluster.Spec
	cc.Timezone = spec.NTP.Timezone
	if len(spec.NTP.Servers) > 0 {
		cc.NTP = &NTP{Enabled: true, Servers: spec.NTP.Servers}
	}
	for _, u := range spec.Users {
		cu := User{Name: u.Name, Shell: "/bin/bash", LockPasswd: true, SSHAuthorizedKeys: u.SSHAuthorizedKeys}
		if u.Sudo {
			cu.Sudo = "ALL=(ALL) NOPASSWD:ALL"
		}
		cc.Users = append(cc.Users, cu)
	}
	userData, err := marshal("#cloud-config\n", cc)
	if err != nil {
		return nil, err
	}
	seed := &Seed{UserData: userData}
	if host.Address != "" {
		if seed.NetworkConfig, err = marshal("", networkConfig(host)); err != nil {
			return nil, err
		}
	}
	// The instance id changes whenever the seed's content changes, so cloud-init applies a new
	// seed to a reused machine, and stays the same for an identical rebuild (reproducible media).
	sum := sha256.New()
	sum.Write(seed.UserData)
	sum.Write(seed.NetworkConfig)
	id := "ksboot-" + nc.Cluster.Name() + "-"
	if nc.Node.Generic {
		id += "worker"
	} else {
		id += nc.Node.Name
	}
	md := MetaData{InstanceID: id + "-" + hex.EncodeToString(sum.Sum(nil))[:12], LocalHostname: cc.Hostname}
	if seed.MetaData, err = marshal("", md); err != nil {
		return nil, err
	}
	return seed, nil
}

func boolPtr(b bool) *bool { return &b }

func networkConfig(h cluster.Host) NetworkConfig {
	eth := Ethernet{DHCP4: boolPtr(false), Addresses: []string{h.Address}}
	id := h.Interface
	if h.MAC != "" {
		eth.Match = &Match{MACAddress: strings.ToLower(h.MAC)}
		if h.Interface != "" {
			eth.SetName = h.Interface
		} else {
			id = "ksboot0"
		}
	}
	if h.Gateway != "" {
		to := "0.0.0.0/0"
		if gw, err := netip.ParseAddr(h.Gateway); err == nil && gw.Is6() {
			to = "::/0"
		}
		eth.Routes = []Route{{To: to, Via: h.Gateway}}
	}
	if len(h.DNS) > 0 {
		eth.Nameservers = &Nameservers{Addresses: h.DNS}
	}
	return NetworkConfig{Version: 2, Ethernets: map[string]Ethernet{id: eth}}
}

func marshal(header string, v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("rendering %T: %w", v, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rendering %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

// installScript is the POSIX shell script cloud-init runs (runcmd) to install the agent and start
// the first-boot unit. It is a script rather than runcmd lines so that it can fail as a whole
// with one message, and so that rerunning it (cloud-init rerun, reboot) is safe: an installed
// binary with the right checksum is kept.
func installScript(a Agent) string {
	var fetch string
	if a.URL != "" {
		fetch = fmt.Sprintf(`fetch() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --retry 10 --retry-delay 3 --retry-connrefused -o "$1" %[1]s
	elif command -v wget >/dev/null 2>&1; then
		wget -q -t 10 -O "$1" %[1]s
	else
		echo "ksboot: neither curl nor wget is installed; cannot download the agent from "%[1]s >&2
		return 1
	fi
}
`, shellQuote(a.URL))
	} else {
		fetch = `fetch() {
	dev=$(blkid -t LABEL=cidata -o device 2>/dev/null | head -n 1)
	[ -n "$dev" ] || dev=$(blkid -t LABEL=CIDATA -o device 2>/dev/null | head -n 1)
	if [ -z "$dev" ]; then
		echo "ksboot: no seed volume labelled cidata/CIDATA is attached; cannot install the agent" >&2
		return 1
	fi
	mnt=$(mktemp -d /run/ksboot-seed.XXXXXX)
	mount -o ro "$dev" "$mnt" || { rmdir "$mnt"; return 1; }
	rc=0
	cp "$mnt/` + AgentFile + `" "$1" || rc=$?
	umount "$mnt"
	rmdir "$mnt"
	return $rc
}
`
	}
	return `#!/bin/sh
# Written by ksboot build-seed: installs the ksboot agent and starts the first-boot unit.
set -eu
want=` + a.SHA256 + `
dst=` + systemd.AgentPath + `
` + fetch + `
if ! { [ -x "$dst" ] && echo "$want  $dst" | sha256sum -c --status; }; then
	tmp=$(mktemp "$(dirname "$dst")/.ksboot.XXXXXX")
	trap 'rm -f "$tmp"' EXIT
	fetch "$tmp"
	if ! echo "$want  $tmp" | sha256sum -c --status; then
		echo "ksboot: the agent binary does not match its checksum sha256:$want; refusing to install it" >&2
		exit 1
	fi
	chmod 0755 "$tmp"
	mv -f "$tmp" "$dst"
	trap - EXIT
fi
echo "ksboot: agent installed at $dst (sha256:$want)"
systemctl daemon-reload
systemctl enable ` + systemd.UnitName + ` ` + systemd.AnnounceName + ` ` + systemd.AgentName + `
systemctl start --no-block ` + systemd.AnnounceName + ` ` + systemd.UnitName + ` ` + systemd.AgentName + `
`
}

// shellQuote quotes s for POSIX sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
