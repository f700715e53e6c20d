package host

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// OS is what /etc/os-release says about the machine.
type OS struct {
	ID        string   // debian, ubuntu, centos, rhel, rocky, almalinux, sles, opensuse-leap, ...
	IDLike    []string // families the distribution follows
	VersionID string   // "12", "22.04", "9.3", "15.5"
	Pretty    string
}

// ReadOS parses <root>/etc/os-release.
func ReadOS(r Root) (OS, error) {
	data, err := r.ReadFile("/etc/os-release")
	if err != nil {
		return OS{}, fmt.Errorf("identifying the operating system: %w", err)
	}
	return ParseOSRelease(data), nil
}

// ParseOSRelease parses the os-release format (KEY=value, optionally quoted).
func ParseOSRelease(data []byte) OS {
	var o OS
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			o.ID = strings.ToLower(v)
		case "ID_LIKE":
			o.IDLike = strings.Fields(strings.ToLower(v))
		case "VERSION_ID":
			o.VersionID = v
		case "PRETTY_NAME":
			o.Pretty = v
		}
	}
	return o
}

// Family is the package family: "debian", "rhel" or "suse" ("" when unknown).
func (o OS) Family() string {
	for _, id := range append([]string{o.ID}, o.IDLike...) {
		switch id {
		case "debian", "ubuntu":
			return "debian"
		case "rhel", "centos", "fedora", "rocky", "almalinux":
			return "rhel"
		case "suse", "sles", "opensuse", "opensuse-leap":
			return "suse"
		}
	}
	return ""
}

// Major is the first number of VERSION_ID.
func (o OS) Major() int {
	n := 0
	for _, c := range o.VersionID {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}
