package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/cluster"
)

// The baseline is what a careful operator would write by hand to bootstrap the same three
// machines from the same bundle without ksboot: one shell script run by cloud-init, with a
// fixed endpoint. It maps the control-plane endpoint's name in /etc/hosts (the Flannel manifest
// reaches the API by it), installs the bundle's packages and binaries, writes the stock containerd
// and kubelet units, imports the images, and runs kubeadm init (then applies the same Flannel
// manifest ksboot would) or kubeadm join, retrying the join until the API answers. Nothing
// else: no preflight, no discovery, no status, no resume. Its power-on → all Nodes Ready is the
// reference ksboot's time is divided by.

// baselineScript is the whole bootstrap. {{.Role}} is init or join.
const baselineScript = `#!/bin/bash
# Hand-written baseline bootstrap (ksboot e2e suite): install from the bundle, kubeadm init/join.
set -euxo pipefail
exec > >(sed -u 's/^/baseline: /' > /dev/console) 2>&1
mkdir -p /mnt/bundle
mount -o ro LABEL=KSBUNDLE /mnt/bundle
B=/mnt/bundle
dpkg -i $B/packages/debian-12/*.deb
install -m 0755 $B/bin/linux/amd64/kubeadm $B/bin/linux/amd64/kubelet $B/bin/linux/amd64/kubectl /usr/local/bin/
tar -C /usr/local -xzf $B/containerd/containerd-*-linux-amd64.tar.gz
install -m 0755 $B/runc/v*/runc.amd64 /usr/local/sbin/runc
mkdir -p /opt/cni/bin && tar -C /opt/cni/bin -xzf $B/cni-plugins/cni-plugins-linux-amd64-*.tgz
tar -C /usr/local/bin -xzf $B/crictl/crictl-*-linux-amd64.tar.gz
# The Flannel manifest reaches the API by the control-plane endpoint's name, as kubeadm's
# kubeconfigs would with a named endpoint: map it, as KubeKey and kubeadm's HA guide do.
echo "{{.InitAddress}} {{.EndpointDomain}}" >> /etc/hosts
swapoff -a
modprobe overlay
modprobe br_netfilter
# kube-proxy exits at start without it (the e2e suite found this with ksboot first).
modprobe nf_conntrack
sysctl -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.ip_forward=1
systemctl daemon-reload
systemctl enable --now containerd
for f in $B/images/*.tar; do ctr -n k8s.io images import "$f"; done
systemctl enable kubelet
{{if eq .Role "init"}}
kubeadm init --config /root/kubeadm.yaml
export KUBECONFIG=/etc/kubernetes/admin.conf
kubectl apply -f /root/cni.yaml
{{else}}
until kubeadm join {{.Endpoint}} --token {{.Token}} --discovery-token-ca-cert-hash {{.Pin}}; do
  kubeadm reset -f
  sleep 10
done
{{end}}
echo "baseline bootstrap finished"
`

const baselineContainerdUnit = `[Unit]
Description=containerd container runtime
After=network.target local-fs.target
[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999
[Install]
WantedBy=multi-user.target
`

const baselineContainerdConfig = `version = 3
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = 'registry.k8s.io/pause:3.10.2'
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = true
`

const baselineKubeletUnit = `[Unit]
Description=kubelet: The Kubernetes Node Agent
Wants=network-online.target
After=network-online.target
[Service]
ExecStart=/usr/local/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10
[Install]
WantedBy=multi-user.target
`

const baselineKubeletDropIn = `[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# The same kubelet flags as the ksboot scenarios' kubeletArgs.
Environment="KUBELET_EXTRA_ARGS=--housekeeping-interval=30s --runtime-request-timeout=15m"
ExecStart=
ExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`

// baselineKubeadm is kubeadm's own configuration with the waits ksboot also gives it on slow
// machines (without them kubeadm init gives up after 4 minutes under TCG) and the component
// tuning the ksboot scenarios' cluster files set, so that both bootstraps run the same cluster.
const baselineKubeadm = `apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
  - token: {{.Token}}
localAPIEndpoint: {advertiseAddress: {{.Address}}, bindPort: 6443}
nodeRegistration:
  name: {{.Name}}
  ignorePreflightErrors: [NumCPU, Mem]
timeouts: {controlPlaneComponentHealthCheck: 15m0s, kubeletHealthCheck: 10m0s, kubernetesAPICall: 10m0s}
{{- if .Patches}}
patches: {directory: /root/kubeadm-patches}
{{- end}}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: {{.Version}}
networking: {podSubnet: {{.PodCIDR}}, serviceSubnet: {{.ServiceCIDR}}}
# The same slow-machine tuning as the ksboot scenarios' cluster files.
etcd: {local: {extraArgs: [{name: heartbeat-interval, value: "500"}, {name: election-timeout, value: "10000"}, {name: unsafe-no-fsync, value: "true"}]}}
controllerManager: {extraArgs: &leases [{name: leader-elect-lease-duration, value: 120s}, {name: leader-elect-renew-deadline, value: 100s}, {name: leader-elect-retry-period, value: 10s}]}
scheduler: {extraArgs: *leases}
# The certificate names the endpoint Flannel's manifest reaches the API by, as KubeKey's does.
apiServer:
{{- if .EndpointDomain}}
  certSANs: [{{.EndpointDomain}}]
{{- end}}
  extraArgs: [{name: etcd-healthcheck-timeout, value: 30s}]
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
`

type baselineParams struct {
	Role, Name, Address, Endpoint, Token, Pin, Version, PodCIDR, ServiceCIDR string
	// InitAddress and EndpointDomain make the /etc/hosts line for the control-plane endpoint.
	InitAddress, EndpointDomain string
	// Patches: the cluster file has kubeadm patches, which the init node gets too.
	Patches bool
}

// baselineSeeds writes one cidata ISO per guest, with genisoimage, from the hand-written
// cloud-config; the cluster file supplies addresses and CIDRs, its secrets the token and CA.
func (r *run) baselineSeeds() {
	guests := baselineFiles(r.t, r.clusters[r.sc.Baseline.Cluster], r.sc, filepath.Join(r.work, "baseline-manifests"))
	for _, g := range r.sc.Guests {
		var ud bytes.Buffer
		ud.WriteString("#cloud-config\nwrite_files:\n")
		for _, f := range guests[g.Name].files {
			fmt.Fprintf(&ud, "  - path: %s\n    permissions: '%s'\n    content: |\n", f.path, f.mode)
			for _, line := range strings.Split(strings.TrimSuffix(f.content, "\n"), "\n") {
				fmt.Fprintf(&ud, "      %s\n", line)
			}
		}
		ud.WriteString("runcmd:\n  - [/root/bootstrap.sh]\n")
		netcfg := fmt.Sprintf("version: 2\nethernets:\n  eth0:\n    match: {macaddress: '%s'}\n    set-name: eth0\n"+
			"    addresses: [%s/24]\n    routes: [{to: 0.0.0.0/0, via: 10.77.0.1}]\n    nameservers: {addresses: [10.77.0.1]}\n", g.MAC, guests[g.Name].address)
		meta := fmt.Sprintf("instance-id: baseline-%s\nlocal-hostname: %s\n", g.Name, g.Name)
		r.seeds[g.Seed] = r.genISO(g.Name, map[string]string{"user-data": ud.String(), "network-config": netcfg, "meta-data": meta})
	}
}

// baselineGuest is what one guest's hand-written seed holds.
type baselineGuest struct {
	address string
	files   []writeFile
}

// baselineFiles makes each guest's files from the cluster file (addresses, CIDRs, patches),
// its secrets (token, CA) and the CNI manifest ksboot would apply, rendered into manifests.
func baselineFiles(t testing.TB, file string, sc *Scenario, manifests string) map[string]baselineGuest {
	b := sc.Baseline
	c, _, err := cluster.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := cluster.LoadOrCreateSecrets(cluster.SecretsDir(file, c.Metadata.Name))
	if err != nil {
		t.Fatal(err)
	}
	pin, err := s.CAPin()
	if err != nil {
		t.Fatal(err)
	}
	// The CNI manifest ksboot would apply, rendered here: the baseline applies the same one.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := addons.Render(ctx, manifests, addons.Options{Cluster: c}); err != nil {
		t.Fatal(err)
	}
	cni, err := os.ReadFile(filepath.Join(manifests, "cni.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	addr := map[string]string{}
	for _, h := range c.Spec.Hosts {
		addr[h.Name], _, _ = strings.Cut(h.Address, "/")
	}
	out := map[string]baselineGuest{}
	for _, g := range sc.Guests {
		p := baselineParams{Role: "join", Name: g.Name, Address: addr[g.Name], Endpoint: addr[b.Init] + ":6443",
			InitAddress: addr[b.Init], EndpointDomain: c.Spec.ControlPlaneEndpoint.Domain,
			Token: s.BootstrapToken, Pin: pin, Version: c.Spec.Kubernetes.Version,
			PodCIDR: c.Spec.Network.KubePodsCIDR, ServiceCIDR: c.Spec.Network.KubeServiceCIDR,
			Patches: len(c.Spec.Kubernetes.Patches) > 0}
		if g.Name == b.Init {
			p.Role = "init"
		}
		if p.Address == "" {
			t.Fatalf("baseline: guest %s has no address in the cluster file", g.Name)
		}
		files := []writeFile{
			{"/root/bootstrap.sh", "0700", render(t, baselineScript, p)},
			{"/etc/systemd/system/containerd.service", "0644", baselineContainerdUnit},
			{"/etc/containerd/config.toml", "0644", baselineContainerdConfig},
			{"/etc/systemd/system/kubelet.service", "0644", baselineKubeletUnit},
			{"/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", "0644", baselineKubeletDropIn},
		}
		if p.Role == "init" {
			files = append(files,
				writeFile{"/root/kubeadm.yaml", "0600", render(t, baselineKubeadm, p)},
				writeFile{"/root/cni.yaml", "0644", string(cni)},
				writeFile{"/etc/kubernetes/pki/ca.crt", "0644", string(s.CACert)},
				writeFile{"/etc/kubernetes/pki/ca.key", "0600", string(s.CAKey)})
			// The cluster file's kubeadm patches, under the names kubeadm reads
			// ("target[suffix][+type].yaml"), as a kubeadm user writes them by hand.
			for i, pt := range c.Spec.Kubernetes.Patches {
				files = append(files, writeFile{fmt.Sprintf("/root/kubeadm-patches/%s%d+%s.yaml", pt.Target, i, pt.Type), "0600", pt.Patch})
			}
		}
		out[g.Name] = baselineGuest{address: p.Address, files: files}
	}
	return out
}

type writeFile struct{ path, mode, content string }

func render(t interface{ Fatal(...any) }, text string, p baselineParams) string {
	var b bytes.Buffer
	if err := template.Must(template.New("").Parse(text)).Execute(&b, p); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// genISO packs a NoCloud seed with genisoimage, as cloud-localds does.
func (r *run) genISO(name string, files map[string]string) string {
	dir := filepath.Join(r.work, "baseline", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.t.Fatal(err)
	}
	var names []string
	for n, content := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(content), 0o600); err != nil {
			r.t.Fatal(err)
		}
		names = append(names, n)
	}
	iso := filepath.Join(r.work, "baseline", name+".iso")
	args := append([]string{"-quiet", "-output", iso, "-volid", "cidata", "-joliet", "-rock"}, names...)
	cmd := exec.Command("genisoimage", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("genisoimage: %v\n%s", err, out)
	}
	return iso
}
