package cloudinit

// CloudConfig is the subset of cloud-init's #cloud-config that ksboot writes. Keys are
// cloud-init's own (see `cloud-init schema`); every field is optional and omitted when empty.
type CloudConfig struct {
	Hostname         string      `yaml:"hostname,omitempty"`
	PreserveHostname *bool       `yaml:"preserve_hostname,omitempty"`
	Timezone         string      `yaml:"timezone,omitempty"`
	NTP              *NTP        `yaml:"ntp,omitempty"`
	Users            []User      `yaml:"users,omitempty"`
	WriteFiles       []WriteFile `yaml:"write_files,omitempty"`
	RunCmd           [][]string  `yaml:"runcmd,omitempty"`
}

// NTP is cloud-init's ntp module configuration.
type NTP struct {
	Enabled bool     `yaml:"enabled"`
	Servers []string `yaml:"servers,omitempty"`
}

// User is one entry of cloud-init's users list.
type User struct {
	Name              string   `yaml:"name"`
	Groups            string   `yaml:"groups,omitempty"`
	Shell             string   `yaml:"shell,omitempty"`
	Sudo              string   `yaml:"sudo,omitempty"`
	LockPasswd        bool     `yaml:"lock_passwd"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
}

// WriteFile is one entry of cloud-init's write_files.
type WriteFile struct {
	Path        string `yaml:"path"`
	Content     string `yaml:"content"`
	Encoding    string `yaml:"encoding,omitempty"`
	Owner       string `yaml:"owner,omitempty"`
	Permissions string `yaml:"permissions,omitempty"`
}

// MetaData is the NoCloud meta-data file.
type MetaData struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname,omitempty"`
}

// NetworkConfig is cloud-init's network configuration version 2 (netplan syntax).
type NetworkConfig struct {
	Version   int                 `yaml:"version"`
	Ethernets map[string]Ethernet `yaml:"ethernets"`
}

// Ethernet is one physical interface in network-config v2.
type Ethernet struct {
	Match       *Match       `yaml:"match,omitempty"`
	SetName     string       `yaml:"set-name,omitempty"`
	DHCP4       *bool        `yaml:"dhcp4,omitempty"`
	Addresses   []string     `yaml:"addresses,omitempty"`
	Routes      []Route      `yaml:"routes,omitempty"`
	Nameservers *Nameservers `yaml:"nameservers,omitempty"`
}

// Match selects an interface.
type Match struct {
	MACAddress string `yaml:"macaddress,omitempty"`
	Name       string `yaml:"name,omitempty"`
}

// Route is a static route. The default route is written as 0.0.0.0/0: cloud-init 22.4 (Debian 12)
// rejects the "default" keyword.
type Route struct {
	To  string `yaml:"to"`
	Via string `yaml:"via"`
}

// Nameservers lists DNS servers.
type Nameservers struct {
	Addresses []string `yaml:"addresses"`
}
