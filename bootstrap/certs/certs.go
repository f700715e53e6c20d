package certs

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install"
)

// The annotations on a control plane's Node: the agent's report, and the request of `ksboot
// certs renew` (a unique time) and the agent's answer (the request's value, once renewed).
const (
	ReportAnnotation         = "ksboot.dev/certificates"
	RenewRequestedAnnotation = "ksboot.dev/certs-renew-requested"
	RenewedAnnotation        = "ksboot.dev/certs-renewed"
)

// RenewBefore is how close to expiry the agent renews by itself: KubeKey's auto-renew script
// renews when a certificate has fewer than 30 days left, checked every week; the agent checks
// every hour.
const RenewBefore = 30 * 24 * time.Hour

// apiWait bounds the wait for the local API server after the control-plane pods restart.
const apiWait = 5 * time.Minute

// Cert is one certificate kubeadm manages, with when it expires.
type Cert struct {
	// Name is kubeadm's name for it (`kubeadm certs check-expiration`'s first column).
	Name     string    `json:"name"`
	NotAfter time.Time `json:"notAfter"`
	// CA marks a certificate authority: kubeadm does not renew those (ten years).
	CA bool `json:"ca,omitempty"`
}

// managed lists kubeadm's certificates as `kubeadm certs check-expiration` does: the
// kubeconfig files (client certificate embedded), the PKI leaf certificates, then the CAs.
// super-admin.conf exists from v1.29 and external-etcd files never on ksboot's stacked etcd:
// a file that is absent is left out.
var managed = []struct {
	name, file string
	kubeconfig bool
	ca         bool
}{
	{"admin.conf", "/etc/kubernetes/admin.conf", true, false},
	{"super-admin.conf", "/etc/kubernetes/super-admin.conf", true, false},
	{"controller-manager.conf", "/etc/kubernetes/controller-manager.conf", true, false},
	{"scheduler.conf", "/etc/kubernetes/scheduler.conf", true, false},
	{"apiserver", "/etc/kubernetes/pki/apiserver.crt", false, false},
	{"apiserver-etcd-client", "/etc/kubernetes/pki/apiserver-etcd-client.crt", false, false},
	{"apiserver-kubelet-client", "/etc/kubernetes/pki/apiserver-kubelet-client.crt", false, false},
	{"etcd-healthcheck-client", "/etc/kubernetes/pki/etcd/healthcheck-client.crt", false, false},
	{"etcd-peer", "/etc/kubernetes/pki/etcd/peer.crt", false, false},
	{"etcd-server", "/etc/kubernetes/pki/etcd/server.crt", false, false},
	{"front-proxy-client", "/etc/kubernetes/pki/front-proxy-client.crt", false, false},
	{"ca", "/etc/kubernetes/pki/ca.crt", false, true},
	{"etcd-ca", "/etc/kubernetes/pki/etcd/ca.crt", false, true},
	{"front-proxy-ca", "/etc/kubernetes/pki/front-proxy-ca.crt", false, true},
}

// Read returns the certificates of the node under root; none on a node that is not a control
// plane.
func Read(root host.Root) ([]Cert, error) {
	var out []Cert
	var problems []string
	for _, m := range managed {
		data, err := root.ReadFile(m.file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if m.kubeconfig {
			cfg, err := clientcmd.Load(data)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", m.file, err))
				continue
			}
			data = nil
			if ctx, ok := cfg.Contexts[cfg.CurrentContext]; ok {
				if ai, ok := cfg.AuthInfos[ctx.AuthInfo]; ok {
					data = ai.ClientCertificateData
				}
			}
			if len(data) == 0 {
				problems = append(problems, fmt.Sprintf("%s: no embedded client certificate in its current context", m.file))
				continue
			}
		}
		block, _ := pem.Decode(data)
		if block == nil {
			problems = append(problems, fmt.Sprintf("%s: no PEM certificate", m.file))
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", m.file, err))
			continue
		}
		out = append(out, Cert{Name: m.name, NotAfter: c.NotAfter.UTC(), CA: m.ca})
	}
	if len(problems) > 0 {
		return out, fmt.Errorf("reading the certificates: %s", strings.Join(problems, "; "))
	}
	return out, nil
}

// Earliest is the renewable certificate (not a CA) that expires first, or false.
func Earliest(certs []Cert) (Cert, bool) {
	var leaf []Cert
	for _, c := range certs {
		if !c.CA {
			leaf = append(leaf, c)
		}
	}
	if len(leaf) == 0 {
		return Cert{}, false
	}
	return slices.MinFunc(leaf, func(a, b Cert) int { return a.NotAfter.Compare(b.NotAfter) }), true
}

// Due reports whether the certificates should be renewed now: the earliest expires within
// RenewBefore.
func Due(certs []Cert, now time.Time) bool {
	e, ok := Earliest(certs)
	return ok && e.NotAfter.Sub(now) < RenewBefore
}

// Report is the annotation value: the certificates as JSON, earliest first.
func Report(certs []Cert) string {
	sorted := slices.Clone(certs)
	slices.SortStableFunc(sorted, func(a, b Cert) int { return a.NotAfter.Compare(b.NotAfter) })
	b, _ := json.Marshal(sorted)
	return string(b)
}

// ParseReport reads a Report annotation.
func ParseReport(s string) ([]Cert, error) {
	var certs []Cert
	if err := json.Unmarshal([]byte(s), &certs); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", ReportAnnotation, err)
	}
	return certs, nil
}

// RenewOptions say how to renew on this node.
type RenewOptions struct {
	Root    host.Root
	Exec    host.Runner
	Console io.Writer
	// Node is this node's name: its control-plane pods are <component>-<node>.
	Node string
	// APIReady waits until the local API server answers again; nil dials 127.0.0.1:6443.
	APIReady func(ctx context.Context) error
}

// controlPlanePods are the static pods that read the renewed files at start.
var controlPlanePods = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"}

// Renew renews every certificate kubeadm manages on this control plane, as KubeKey's
// auto-renew script does: `kubeadm certs renew all`, then the control-plane pods are removed
// (`crictl rmp -f`) so that the kubelet starts them again with the new files, root's kubeconfig
// copy is refreshed from admin.conf, and it waits, bounded, for the API server.
func Renew(ctx context.Context, o RenewOptions) error {
	say := func(format string, args ...any) { fmt.Fprintf(o.Console, "ksboot: certs: "+format+"\n", args...) }
	kubeadm := path.Join(install.BinDir, "kubeadm")
	crictl := path.Join(install.BinDir, "crictl")
	if _, err := o.Exec.Run(ctx, host.Cmd{Name: kubeadm, Args: []string{"certs", "renew", "all"}}); err != nil {
		return fmt.Errorf("kubeadm certs renew all: %w", err)
	}
	say("renewed by kubeadm certs renew all; restarting the control-plane pods")
	var ids []string
	for _, c := range controlPlanePods {
		out, err := o.Exec.Run(ctx, host.Cmd{Name: crictl, Args: []string{"pods", "--namespace", "kube-system", "--name", "^" + c + "-" + o.Node + "$", "-q"}})
		if err != nil {
			return fmt.Errorf("finding the %s pod: %w", c, err)
		}
		ids = append(ids, strings.Fields(string(out))...)
	}
	if len(ids) > 0 {
		if _, err := o.Exec.Run(ctx, host.Cmd{Name: crictl, Args: append([]string{"rmp", "-f"}, ids...)}); err != nil {
			return fmt.Errorf("restarting the control-plane pods (crictl rmp -f): %w", err)
		}
	}
	if data, err := o.Root.ReadFile("/etc/kubernetes/admin.conf"); err == nil && o.Root.Exists("/root/.kube/config") {
		if _, err := o.Root.WriteFile("/root/.kube/config", data, 0o600); err != nil {
			return fmt.Errorf("refreshing /root/.kube/config: %w", err)
		}
	}
	ready := o.APIReady
	if ready == nil {
		ready = dialAPI
	}
	wctx, cancel := context.WithTimeout(ctx, apiWait)
	defer cancel()
	if err := ready(wctx); err != nil {
		return fmt.Errorf("the API server did not answer %s after the restart: %w", apiWait, err)
	}
	say("control-plane pods restarted with the new certificates")
	return nil
}

// dialAPI waits until the local API server accepts connections again.
func dialAPI(ctx context.Context) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", "127.0.0.1:6443")
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("127.0.0.1:6443: %w", err)
		case <-time.After(2 * time.Second):
		}
	}
}
