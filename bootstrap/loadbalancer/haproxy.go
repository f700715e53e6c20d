package loadbalancer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/versions"
)

// HealthCheckPort is haproxy's own health endpoint (KubeKey's 8081), which the kubelet probes.
// ksboot binds it to 127.0.0.1 where KubeKey binds every address: nothing off the node needs it.
const HealthCheckPort = 8081

// haproxyConfigMountPath is where the official image reads haproxy.cfg from.
const haproxyConfigMountPath = "/usr/local/etc/haproxy/"

// HAProxyConfig is haproxy.cfg of a node's local API load balancer: KubeKey's configuration
// (cmd/kk/pkg/loadbalancer/templates/haproxyConfig.go) as data. What differs from KubeKey and
// why is said at the fields.
type HAProxyConfig struct {
	// MaxConn bounds connections, globally and per frontend (KubeKey: 4000).
	MaxConn int
	// Listen is the API frontend: 127.0.0.1 and the endpoint's port, so that only this node
	// uses it.
	Listen netip.AddrPort
	// Health is the frontend answering /healthz while haproxy runs, for the kubelet's probes.
	Health netip.AddrPort
	// Timeouts, in haproxy's syntax. KubeKey's client timeout is 30s against 15m for the
	// server; haproxy's manual asks for equal client and server timeouts in TCP mode, and a
	// kubelet's idle watch should not be cut after 30s, so both are 15m here.
	Connect, Client, Server, Check string
	// Retries before a connection attempt is redispatched to another server.
	Retries int
	// Servers are the control planes' API servers, health-checked with GET /healthz over TLS
	// without verifying the certificate (anonymous /healthz is allowed by kubeadm's RBAC).
	Servers []HAProxyServer
}

// HAProxyServer is one API server of the backend.
type HAProxyServer struct {
	Name    string
	Address netip.AddrPort
}

// HAProxyConfigFor is the configuration of the cluster: one server per control plane, at its
// static address and the API server's port (the endpoint port, which kubeadm binds on every
// control plane). Validation ensures every control plane has a static address.
func HAProxyConfigFor(c *cluster.Cluster) (HAProxyConfig, error) {
	port := uint16(c.Spec.ControlPlaneEndpoint.Port)
	cfg := HAProxyConfig{
		MaxConn: 4000,
		Listen:  netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
		Health:  netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), HealthCheckPort),
		Connect: "30s", Client: "15m", Server: "15m", Check: "30s",
		Retries: 5,
	}
	for _, name := range c.Spec.RoleGroups.ControlPlane {
		h, _ := c.Host(name)
		p, err := netip.ParsePrefix(h.Address)
		if err != nil {
			return HAProxyConfig{}, fmt.Errorf("haproxy needs the static address of control plane %q (spec.hosts[].address)", name)
		}
		cfg.Servers = append(cfg.Servers, HAProxyServer{Name: name, Address: netip.AddrPortFrom(p.Addr(), port)})
	}
	if len(cfg.Servers) == 0 {
		return HAProxyConfig{}, fmt.Errorf("haproxy needs at least one control plane")
	}
	return cfg, nil
}

// Render writes the configuration in haproxy's syntax.
func (h HAProxyConfig) Render() []byte {
	var b strings.Builder
	line := func(indent bool, format string, args ...any) {
		if indent {
			b.WriteString("    ")
		}
		fmt.Fprintf(&b, format+"\n", args...)
	}
	line(false, "# Written by ksboot: this node's load balancer for the Kubernetes API")
	line(false, "# (spec.controlPlaneEndpoint.internalLoadbalancer: haproxy).")
	line(false, "global")
	line(true, "maxconn %d", h.MaxConn)
	// The container's output is the log: KubeKey's syslog at 127.0.0.1 has no listener.
	line(true, "log stdout format raw local0 info")
	line(false, "")
	line(false, "defaults")
	line(true, "mode tcp")
	line(true, "log global")
	line(true, "option dontlognull")
	line(true, "option redispatch")
	line(true, "retries %d", h.Retries)
	line(true, "timeout connect %s", h.Connect)
	line(true, "timeout client %s", h.Client)
	line(true, "timeout server %s", h.Server)
	line(true, "timeout check %s", h.Check)
	line(true, "maxconn %d", h.MaxConn)
	line(false, "")
	line(false, "frontend healthz")
	line(true, "bind %s", h.Health)
	line(true, "mode http")
	line(true, "monitor-uri /healthz")
	line(false, "")
	line(false, "frontend kube_api_frontend")
	line(true, "bind %s", h.Listen)
	line(true, "mode tcp")
	line(true, "option tcplog")
	line(true, "default_backend kube_api_backend")
	line(false, "")
	line(false, "backend kube_api_backend")
	line(true, "mode tcp")
	line(true, "balance leastconn")
	line(true, "default-server inter 15s downinter 15s rise 2 fall 2 slowstart 60s maxconn 1000 maxqueue 256 weight 100")
	line(true, "option httpchk GET /healthz")
	line(true, "http-check expect status 200")
	for _, s := range h.Servers {
		// netip.AddrPort brackets an IPv6 address, as haproxy reads it.
		line(true, "server %s %s check check-ssl verify none", s.Name, s.Address)
	}
	return []byte(b.String())
}

// HAProxyPod is the haproxy static pod (KubeKey's haproxy.yaml). Its annotation carries the
// configuration's digest, so that the kubelet restarts haproxy when the configuration changes.
func HAProxyPod(c *cluster.Cluster, config []byte) *corev1.Pod {
	sum := sha256.Sum256(config)
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		// A host-network pod's probe goes to the node's address unless told otherwise; the
		// health frontend listens on loopback only.
		Host: "127.0.0.1", Path: "/healthz", Port: intstr.FromInt32(HealthCheckPort),
	}}}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "haproxy", Namespace: metav1.NamespaceSystem,
			Labels:      map[string]string{"k8s-app": "kube-haproxy"},
			Annotations: map[string]string{"ksboot.dev/haproxy-cfg-sha256": hex.EncodeToString(sum[:])},
		},
		Spec: corev1.PodSpec{
			HostNetwork:       true,
			PriorityClassName: "system-node-critical",
			Containers: []corev1.Container{{
				Name:            "haproxy",
				Image:           addons.Image(c.Spec.Registry, versions.HAProxyImage),
				ImagePullPolicy: corev1.PullIfNotPresent,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("25m"),
					corev1.ResourceMemory: resource.MustParse("32M"),
				}},
				LivenessProbe:  probe,
				ReadinessProbe: probe.DeepCopy(),
				VolumeMounts:   []corev1.VolumeMount{{Name: "etc-haproxy", MountPath: haproxyConfigMountPath, ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "etc-haproxy", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				// Directory, not DirectoryOrCreate: a missing configuration must fail the pod,
				// not start haproxy on an empty directory.
				Path: HAProxyConfigDir, Type: ptr.To(corev1.HostPathDirectory),
			}}}},
		},
	}
}
