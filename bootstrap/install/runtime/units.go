package runtime

// ContainerdUnit is containerd.service as containerd v2.4.2 ships it (containerd.service at the
// top of its repository), with a first line saying who installed it. It runs
// /usr/local/bin/containerd, where the release tarball's binaries go. It is installed in
// /etc/systemd/system so that it wins over a distribution's containerd.service in /lib, whose
// /usr/bin/containerd would be a different (and on Debian 12, 1.6) containerd.
const ContainerdUnit = `# Installed by ksboot: containerd.service as shipped with containerd v2.4.2.
# Copyright The containerd Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target dbus.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd

Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5

# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNPROC=infinity
LimitCORE=infinity

# Comment TasksMax if your systemd version does not supports it.
# Only systemd 226 and above support this version.
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`

// KubeletUnit is kubelet.service as the Kubernetes release packaging ships it
// (kubernetes/release cmd/krel/templates/latest/kubelet/kubelet.service), with the binary in
// /usr/local/bin as the Kubernetes documentation's "without a package manager" install does.
// The kubelet restarts forever: until kubeadm writes its configuration it exits at once, and
// kubeadm expects systemd to keep starting it.
const KubeletUnit = `[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
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

// KubeadmDropIn is kubeadm's kubelet drop-in as the release packaging ships it
// (cmd/krel/templates/latest/kubeadm/10-kubeadm.conf), binary path as in KubeletUnit:
// --config=/var/lib/kubelet/config.yaml and KUBELET_KUBEADM_ARGS from the env file kubeadm
// writes at init/join time.
const KubeadmDropIn = `# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/sysconfig/kubelet
ExecStart=
ExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`
