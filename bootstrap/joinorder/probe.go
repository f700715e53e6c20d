package joinorder

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ksboot/ksboot/cluster"
)

// apiServerName is a name that every API server certificate kubeadm makes carries, as does the
// test harness's. API servers are reached by node address, VIP or load balancer, not all of
// which are in every certificate, so the certificate is checked against this name; trust
// comes from the cluster CA, which only the cluster's members hold.
const apiServerName = "kubernetes"

// prober asks the cluster about the earlier control planes. Every call is bounded by timeout.
type prober struct {
	c        *cluster.Cluster
	self     ControlPlane // this node; Address is "" without a static one
	endpoint string
	resolve  func(hostport string) string
	timeout  time.Duration
	creds    *credentials
	kube     kubernetes.Interface
	direct   *http.Client
}

func newProber(o Options, creds *credentials) (*prober, error) {
	cfg := &rest.Config{
		Host: "https://" + o.Endpoint,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: creds.clusterCA, CertData: creds.apiCert, KeyData: creds.apiKey, ServerName: apiServerName,
		},
		Timeout: o.CallTimeout,
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("a client for the API at %s: %w", o.Endpoint, err)
	}
	direct := &http.Client{Timeout: o.CallTimeout, Transport: &http.Transport{
		// Control planes talk to each other directly, never through a proxy.
		Proxy: nil,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12, RootCAs: creds.clusterCAs, Certificates: []tls.Certificate{creds.apiPair},
			ServerName: apiServerName,
		},
		DisableKeepAlives: true,
	}}
	return &prober{
		c: &o.Config.Cluster, self: ControlPlane{Name: o.Node, Address: staticAddress(&o.Config.Cluster, o.Node)},
		endpoint: o.Endpoint, resolve: o.Resolve, timeout: o.CallTimeout, creds: creds, kube: kube, direct: direct,
	}, nil
}

// verdict is what one round found missing of one earlier control plane; none when it is ready.
type verdict struct {
	cp      ControlPlane
	missing []string
}

func (v verdict) String() string { return v.cp.Name + ": " + strings.Join(v.missing, "; ") }

// round asks about every earlier control plane once. It also says whether this node is itself
// an etcd member already.
func (p *prober) round(ctx context.Context, cps []ControlPlane) (out []verdict, selfMember bool) {
	etcd, members := p.etcdRound(ctx, cps)
	selfMember = p.self.Name != "" && findMember(members, p.self) != nil
	for i, cp := range cps {
		var missing []string
		n, err := p.node(ctx, cp.Name)
		if m := nodeVerdict(n, err); m != "" {
			missing = append(missing, m)
		}
		if m := etcdVerdict(cp, etcd[i], members); m != "" {
			missing = append(missing, m)
		}
		if m := p.apiVerdict(ctx, cp); m != "" {
			missing = append(missing, m)
		}
		out = append(out, verdict{cp: cp, missing: missing})
	}
	return out, selfMember
}

func (p *prober) node(ctx context.Context, name string) (*corev1.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return p.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

// nodeVerdict: the control plane must be a Node whose Ready condition is True.
func nodeVerdict(n *corev1.Node, err error) string {
	switch {
	case apierrors.IsNotFound(err):
		return "not a Node yet"
	case err != nil:
		return "its Node cannot be read through the API: " + short(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			return ""
		}
		return "Node not Ready" + because(c.Reason, c.Message)
	}
	return "Node not Ready yet (its kubelet has reported no Ready condition)"
}

// apiVerdict: the control plane's own API server answers /readyz, or, when it cannot be
// reached from here, its mirror pod is Ready.
func (p *prober) apiVerdict(ctx context.Context, cp ControlPlane) string {
	addr := cp.API(p.c)
	rerr := p.readyz(ctx, p.dial(addr))
	if rerr == nil {
		return ""
	}
	pctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	pod, err := p.kube.CoreV1().Pods("kube-system").Get(pctx, cp.MirrorPod(), metav1.GetOptions{})
	state := ""
	switch {
	case apierrors.IsNotFound(err):
		state = "does not exist yet"
	case err != nil:
		state = "cannot be read: " + short(err)
	case podReady(pod):
		return ""
	default:
		state = "is not Ready"
	}
	return fmt.Sprintf("API server not healthy (/readyz at %s: %s; mirror pod %s %s)", addr, short(rerr), cp.MirrorPod(), state)
}

func (p *prober) readyz(ctx context.Context, hostport string) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+hostport+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := p.direct.Do(req)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return ue.Err // the address is in the caller's message already
	} else if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var failed []string
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "[-]") {
			failed = append(failed, strings.TrimSpace(strings.TrimPrefix(line, "[-]")))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s: %s", resp.Status, strings.Join(failed, ", "))
	}
	return errors.New(resp.Status)
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// etcdObservation is what the etcd at one control plane's address said.
type etcdObservation struct {
	err       error // it did not answer (nothing else is set)
	id        uint64
	learner   bool
	errors    []string // errors the member reports about itself (alarms)
	healthErr error    // a linearizable read through it failed
}

// member is one entry of etcd's member list.
type member struct {
	id       uint64
	name     string // empty until the member has started
	peerURLs []string
	learner  bool
}

// etcdRound asks the etcd at each control plane's address for its status and health, and the
// first that answers for the member list. The list is read serializably, from that member's
// own view, so that it is there even while the cluster has no quorum.
func (p *prober) etcdRound(ctx context.Context, cps []ControlPlane) ([]etcdObservation, []member) {
	obs := make([]etcdObservation, len(cps))
	var members []member
	for i, cp := range cps {
		var list []member
		obs[i], list = p.etcd(ctx, cp, members == nil)
		if members == nil {
			members = list
		}
	}
	return obs, members
}

// etcd asks the member at cp's address; with list it also returns the member list.
func (p *prober) etcd(ctx context.Context, cp ControlPlane, list bool) (etcdObservation, []member) {
	addr := p.dial(cp.Etcd())
	// A plain connection first: it says "connection refused" where the gRPC client would only
	// report its deadline.
	dctx, cancel := context.WithTimeout(ctx, p.timeout)
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return etcdObservation{err: err}, nil
	}
	conn.Close()
	endpoint := "https://" + addr
	cli, err := p.etcdClient(endpoint)
	if err != nil {
		return etcdObservation{err: err}, nil
	}
	defer cli.Close()
	call := func(f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, p.timeout)
		defer cancel()
		return f(ctx)
	}
	var st *clientv3.StatusResponse
	if err := call(func(ctx context.Context) (err error) { st, err = cli.Status(ctx, endpoint); return err }); err != nil {
		return etcdObservation{err: err}, nil
	}
	o := etcdObservation{id: st.Header.GetMemberId(), learner: st.IsLearner, errors: st.Errors}
	var members []member
	if list {
		var ml *clientv3.MemberListResponse
		if call(func(ctx context.Context) (err error) {
			ml, err = cli.MemberList(ctx, clientv3.WithSerializable())
			return err
		}) == nil {
			for _, m := range ml.Members {
				members = append(members, member{id: m.ID, name: m.Name, peerURLs: m.PeerURLs, learner: m.IsLearner})
			}
		}
	}
	if !o.learner {
		// What `etcdctl endpoint health` does: a linearizable read through this member, which
		// needs the cluster's quorum. Permission denied is an answer too (etcd with auth).
		o.healthErr = call(func(ctx context.Context) error {
			_, err := cli.Get(ctx, "health")
			if errors.Is(err, rpctypes.ErrPermissionDenied) {
				return nil
			}
			return err
		})
	}
	return o, members
}

// etcdVerdict: the member at cp's address is started, a voting member, reports no errors and
// answers a linearizable read. When nothing answers there, the member list says how far it is.
func etcdVerdict(cp ControlPlane, o etcdObservation, members []member) string {
	if o.err == nil {
		if m := memberByID(members, o.id); o.learner || (m != nil && m.learner) {
			return "etcd member is still a learner (not yet promoted to a voting member)"
		}
		if len(o.errors) > 0 {
			return "etcd member reports " + strings.Join(o.errors, ", ")
		}
		if o.healthErr != nil {
			return "etcd member does not answer health: " + short(o.healthErr)
		}
		return ""
	}
	if members == nil {
		return fmt.Sprintf("etcd does not answer at %s: %s", cp.Etcd(), short(o.err))
	}
	switch m := findMember(members, cp); {
	case m == nil:
		return "not an etcd member yet"
	case m.name == "":
		return "etcd member not started yet"
	default:
		return fmt.Sprintf("etcd member does not answer at %s: %s", cp.Etcd(), short(o.err))
	}
}

// findMember is cp's entry in the member list: kubeadm names a member after its node, and a
// member that has not started yet has no name, only its peer URL on the node's address.
func findMember(members []member, cp ControlPlane) *member {
	for i, m := range members {
		if m.name == cp.Name {
			return &members[i]
		}
		for _, pu := range m.peerURLs {
			if u, err := url.Parse(pu); err == nil && cp.Address != "" && u.Hostname() == cp.Address {
				return &members[i]
			}
		}
	}
	return nil
}

func memberByID(members []member, id uint64) *member {
	for i, m := range members {
		if m.id == id {
			return &members[i]
		}
	}
	return nil
}

// dial is where to connect for a control plane's host:port (tests map it to loopback).
func (p *prober) dial(hostport string) string {
	if p.resolve == nil {
		return hostport
	}
	return p.resolve(hostport)
}

// short is the first line of err, cut to a length that fits a console line.
func short(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// because formats a condition's reason and message, if any.
func because(reason, message string) string {
	switch {
	case reason != "" && message != "":
		return fmt.Sprintf(" (%s: %s)", reason, message)
	case reason != "" || message != "":
		return " (" + reason + message + ")"
	}
	return ""
}
