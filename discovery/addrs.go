package discovery

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// virtualPrefixes name interfaces whose addresses other nodes cannot reach: container bridges,
// CNI devices and kube-proxy's IPVS dummy (which carries every Service IP). A node announces
// again after kubeadm has created them, so they must never leak into the announcement.
var virtualPrefixes = []string{
	"lo", "docker", "cni", "flannel", "cali", "vxlan", "tunl", "kube-", "nodelocaldns", "veth",
	"virbr", "cilium", "weave", "genev",
}

// localAddrs picks the addresses a node announces when the caller gives none. hashicorp/mdns
// would otherwise resolve the host name, which on Debian yields 127.0.1.1 from /etc/hosts.
// Preference: the chosen interface; else the interface of the IPv4 default route; else every
// physical-looking interface that is up and can multicast.
func localAddrs(ifi *net.Interface, ipv6 bool) ([]net.IP, error) {
	if ifi != nil {
		ips, err := ifaceAddrs(*ifi, ipv6)
		if err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("network interface %s has no usable address to announce", ifi.Name)
		}
		return ips, nil
	}
	if name, err := defaultRouteIface("/proc/net/route"); err == nil && name != "" {
		if ifi, err := net.InterfaceByName(name); err == nil {
			if ips, err := ifaceAddrs(*ifi, ipv6); err == nil && len(ips) > 0 {
				return ips, nil
			}
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	var out []net.IP
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 || ifi.Flags&net.FlagMulticast == 0 || isVirtual(ifi.Name) {
			continue
		}
		ips, err := ifaceAddrs(ifi, ipv6)
		if err != nil {
			continue
		}
		out = append(out, ips...)
	}
	if len(out) == 0 {
		return nil, errors.New("found no network address to announce; set spec.discovery.interface")
	}
	return out, nil
}

func isVirtual(name string) bool {
	for _, p := range virtualPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ifaceAddrs returns the IPv4 (and, if asked, global IPv6) unicast addresses of an interface.
// Link-local IPv6 addresses are left out: they need a zone that is meaningless to other hosts.
func ifaceAddrs(ifi net.Interface, ipv6 bool) ([]net.IP, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("reading the addresses of %s: %w", ifi.Name, err)
	}
	var out []net.IP
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() || ipn.IP.IsUnspecified() {
			continue
		}
		if ip4 := ipn.IP.To4(); ip4 != nil {
			out = append(out, ip4)
		} else if ipv6 {
			out = append(out, ipn.IP)
		}
	}
	return out, nil
}

// defaultRouteIface reads the interface of the IPv4 default route from /proc/net/route, which
// avoids a netlink dependency for one lookup.
func defaultRouteIface(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		// Iface Destination Gateway Flags ...; destination 00000000 with mask 00000000 is default.
		if len(fs) >= 8 && fs[1] == "00000000" && fs[7] == "00000000" {
			return fs[0], nil
		}
	}
	return "", s.Err()
}
