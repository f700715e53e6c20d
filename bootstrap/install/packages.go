package install

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/workflow"
)

// RequiredPackages are the OS packages kubeadm and kube-proxy need, by package family, under
// each family's own names: socat (port forwarding), conntrack (kube-proxy), ebtables and ipset
// (kube-proxy, CNI), iptables (kubeadm's preflight fails without it on the host up to at
// least v1.31, and the kubelets of the older releases write their own chains), curl, openssl
// and tar for the agent's and operators' use.
var RequiredPackages = map[string][]string{
	"debian": {"socat", "conntrack", "ebtables", "ipset", "iptables", "curl", "openssl", "tar"},
	"rhel":   {"socat", "conntrack-tools", "ebtables", "ipset", "iptables", "curl", "openssl", "tar"},
	"suse":   {"socat", "conntrack-tools", "ebtables", "ipset", "iptables", "curl", "openssl", "tar"},
}

// lockWait bounds how long apt and zypper wait for a package manager lock that someone else
// holds: on first boot cloud-init or unattended-upgrades often does.
const lockWait = "300"

// Packages installs the required OS packages that are missing: from the bundle's packages
// for this distribution when the bundle has any (the bundle is then the only source: an
// offline node must not wait on unreachable repositories), otherwise with the distribution's
// package manager (apt-get, dnf or yum, zypper). Installed packages are never touched.
func Packages(ctx context.Context, o Options) error {
	o, err := o.prepare(ctx)
	if err != nil {
		return err
	}
	family := o.OS.Family()
	required, ok := RequiredPackages[family]
	if !ok {
		return workflow.WithHint(fmt.Errorf("installing packages: %s is not a Debian, Red Hat or SUSE distribution", osName(o.OS)),
			"ksboot installs packages with apt, dnf/yum or zypper; install "+joinNames(RequiredPackages["debian"])+" yourself and skip this phase")
	}
	missing, err := missingPackages(ctx, o, family, required)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		o.Logger.Info("packages already installed", "packages", joinNames(required))
		o.say("packages: %s already installed", joinNames(required))
		return nil
	}
	if local := bundlePackages(o, family); len(local) > 0 {
		return installFromBundle(ctx, o, family, required, missing, local)
	}
	return installFromRepositories(ctx, o, family, missing)
}

// missingPackages asks dpkg or rpm which of names are not installed.
func missingPackages(ctx context.Context, o Options, family string, names []string) ([]string, error) {
	if family == "debian" {
		// dpkg-query exits 1 when it knows none of some names, but still prints the rest.
		out, err := o.Exec.Run(ctx, host.Cmd{Name: "dpkg-query", Args: append([]string{"-W", "-f=${Package} ${db:Status-Abbrev}\\n"}, names...)})
		if err := notStarted(err); err != nil {
			return nil, err
		}
		installed := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && strings.HasPrefix(f[1], "ii") {
				installed[f[0]] = true
			}
		}
		var missing []string
		for _, n := range names {
			if !installed[n] {
				missing = append(missing, n)
			}
		}
		return missing, nil
	}
	// --whatprovides: a package may be satisfied under another name (iptables-ebtables
	// provides ebtables). rpm prints "no package provides <name>" for each one missing and
	// exits with their count.
	out, err := o.Exec.Run(ctx, host.Cmd{Name: "rpm", Args: append([]string{"-q", "--whatprovides"}, names...)})
	if err := notStarted(err); err != nil {
		return nil, err
	}
	var missing []string
	answers := 0
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line != "" {
			answers++
		}
		if rest, ok := strings.CutPrefix(line, "no package provides "); ok && slices.Contains(names, rest) {
			missing = append(missing, rest)
		}
	}
	if err != nil && answers < len(names) {
		// Fewer answers than questions: rpm failed for another reason (a broken database).
		return nil, fmt.Errorf("checking installed packages: %w", err)
	}
	return missing, nil
}

// notStarted passes on a query error only when the command could not run at all: a query
// that ran and exited non-zero has answered (some packages are unknown).
func notStarted(err error) error {
	if err == nil {
		return nil
	}
	var re *host.RunError
	if errors.As(err, &re) && re.ExitCode > 0 {
		return nil
	}
	return fmt.Errorf("checking installed packages: %w", err)
}

// bundlePackages are the source's packages for this distribution and architecture.
func bundlePackages(o Options, family string) []artifacts.Entry {
	kind := artifacts.KindRPM
	if family == "debian" {
		kind = artifacts.KindDeb
	}
	ids := []string{o.OS.ID + "-" + o.OS.VersionID, o.OS.ID + "-" + strconv.Itoa(o.OS.Major())}
	var out []artifacts.Entry
	for _, e := range o.Source.Files(kind) {
		if (e.OS == "" || slices.Contains(ids, e.OS)) && (e.Arch == "" || e.Arch == o.Arch) {
			out = append(out, e)
		}
	}
	return out
}

// installFromBundle installs, in one transaction, every bundle package for this distribution
// that is not installed yet (the required ones and whatever the bundle carries for their
// dependencies). Before anything is installed it checks that the bundle has every missing
// required package and that each file matches its sha256, so a bad bundle changes nothing.
func installFromBundle(ctx context.Context, o Options, family string, required, missing []string, local []artifacts.Entry) error {
	names := make([]string, 0, len(local))
	for _, e := range local {
		names = append(names, e.Name)
	}
	for _, m := range missing {
		if !slices.Contains(names, m) {
			return workflow.WithHint(
				fmt.Errorf("installing %s from %s: %w: the bundle has no %s package for %s", m, o.Source, artifacts.ErrNotFound, m, osName(o.OS)),
				"rebuild the bundle with the packages of this distribution, or install "+m+" before the agent runs")
		}
	}
	notInstalled, err := missingPackages(ctx, o, family, names)
	if err != nil {
		return err
	}
	var paths, installing []string
	for _, e := range local {
		if !slices.Contains(notInstalled, e.Name) || slices.Contains(installing, e.Name) {
			continue
		}
		p, err := o.Source.LocalPath(e)
		if err != nil {
			return sourceHint(err, o.Source)
		}
		paths = append(paths, p)
		installing = append(installing, e.Name)
	}
	var cmd host.Cmd
	if family == "debian" {
		// apt-get (not dpkg -i) orders the set by its dependencies and waits for the dpkg lock.
		cmd = host.Cmd{Name: "apt-get", Env: []string{"DEBIAN_FRONTEND=noninteractive"},
			Args: append([]string{"install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=" + lockWait}, paths...)}
	} else {
		cmd = host.Cmd{Name: "rpm", Args: append([]string{"-U", "-v", "-h"}, paths...)}
	}
	o.Logger.Info("installing packages from the bundle", "packages", joinNames(installing))
	if _, err := o.Exec.Run(ctx, cmd); err != nil {
		return workflow.WithHint(fmt.Errorf("installing %s from %s: %w", joinNames(installing), o.Source, err),
			"the bundle's packages do not fit this system; rebuild the bundle for "+osName(o.OS))
	}
	return checkInstalled(ctx, o, family, required, o.Source.String(), installing)
}

// installFromRepositories installs the missing packages with the distribution's manager.
func installFromRepositories(ctx context.Context, o Options, family string, missing []string) error {
	var cmds []host.Cmd
	var manager string
	switch family {
	case "debian":
		manager = "apt-get"
		env := []string{"DEBIAN_FRONTEND=noninteractive"}
		// Cloud images often ship without package lists; update first, once.
		cmds = append(cmds,
			host.Cmd{Name: "apt-get", Env: env, Args: []string{"update", "-o", "DPkg::Lock::Timeout=" + lockWait}},
			host.Cmd{Name: "apt-get", Env: env, Args: append([]string{"install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=" + lockWait}, missing...)})
	case "rhel":
		manager = "yum"
		if o.Root.Exists("/usr/bin/dnf") {
			manager = "dnf"
		}
		cmds = append(cmds, host.Cmd{Name: manager, Args: append([]string{"install", "-y"}, missing...)})
	case "suse":
		manager = "zypper"
		cmds = append(cmds, host.Cmd{Name: "zypper", Env: []string{"ZYPP_LOCK_TIMEOUT=" + lockWait},
			Args: append([]string{"--non-interactive", "install", "--no-recommends"}, missing...)})
	}
	from := manager + " repositories"
	o.Logger.Info("installing packages", "packages", joinNames(missing), "with", manager)
	for _, c := range cmds {
		if _, err := o.Exec.Run(ctx, c); err != nil {
			return workflow.WithHint(fmt.Errorf("installing %s from %s: %w", joinNames(missing), from, err),
				"check the node's package repositories and network, or use an offline bundle with packages (spec.artifacts.bundle)")
		}
	}
	return checkInstalled(ctx, o, family, RequiredPackages[family], from, missing)
}

// checkInstalled confirms the required packages are there after an install, so that a package
// manager that "succeeded" without installing something is caught here, not by kubeadm.
func checkInstalled(ctx context.Context, o Options, family string, required []string, from string, installed []string) error {
	if o.dryRun() {
		o.say("packages: would install %s from %s", joinNames(installed), from)
		return nil
	}
	still, err := missingPackages(ctx, o, family, required)
	if err != nil {
		return err
	}
	if len(still) > 0 {
		return workflow.WithHint(fmt.Errorf("installing %s from %s: %w: still not installed afterwards", joinNames(still), from, artifacts.ErrNotFound),
			"the package source lacks "+joinNames(still)+" under that name; install it before the agent runs")
	}
	o.say("packages: installed %s from %s", joinNames(installed), from)
	return nil
}

func osName(os host.OS) string {
	if os.Pretty != "" {
		return os.Pretty
	}
	if os.ID == "" {
		return "an unidentified system"
	}
	return os.ID + " " + os.VersionID
}
