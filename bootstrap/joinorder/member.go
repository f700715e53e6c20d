package joinorder

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// StrandedMember is a joining control plane's own etcd member that kubeadm added and whose etcd
// never started.
//
// kubeadm v1.26 gives each member-add call 2 s. On a slow machine the call can time out after
// etcd has committed it; the retry then gets "not enough started members" (etcd checks the
// quorum before it checks for a duplicate peer URL), the join fails before it writes the etcd
// manifest, and the member stays. Between a second member that never starts and the first,
// etcd has no quorum: the API server stops answering and no later join, nor the member's
// removal, can succeed. The only way on is to start that member.
type StrandedMember struct {
	ID uint64
	// InitialCluster is etcd's --initial-cluster to start it with: name=peerURL of every member,
	// this one under its node name and unnamed ones under their hex ID, as kubeadm's join writes it.
	InitialCluster string
	// Voting and Started count the voting members, and those of them that have started (this
	// one included in Voting).
	Voting, Started int
}

// Removable says whether the started members keep a quorum while removing it: removal is a
// change of membership, which needs a quorum of the members as they are.
func (s *StrandedMember) Removable() bool { return s.Started >= s.Voting/2+1 }

func (s *StrandedMember) String() string {
	return fmt.Sprintf("etcd member %x, added by a join that failed before its etcd started (%d of %d voting members started)",
		s.ID, s.Started, s.Voting)
}

// Stranded looks, through the etcd of the control planes before o.Node, for o.Node's own member
// (peer URL peerURL, https://<advertise address>:2380 for kubeadm) that was added but has not
// started. It returns nil when there is none. The member list is read serializably, so it is
// there while the cluster has no quorum.
func Stranded(ctx context.Context, o Options, peerURL string) (*StrandedMember, error) {
	o = o.withDefaults()
	p, cps, err := memberProber(o)
	if err != nil || len(cps) == 0 {
		return nil, err
	}
	var members []member
	var errs []string
	for _, cp := range cps {
		obs, list := p.etcd(ctx, cp, true)
		if list != nil {
			members = list
			break
		}
		if obs.err != nil {
			errs = append(errs, cp.Etcd()+": "+short(obs.err))
		}
	}
	if members == nil {
		return nil, fmt.Errorf("reading etcd's member list from the control planes before %s: %s", o.Node, strings.Join(errs, "; "))
	}
	return stranded(members, o.Node, peerURL), nil
}

// stranded finds self's unstarted member (by peer URL) in members.
func stranded(members []member, self, peerURL string) *StrandedMember {
	var s StrandedMember
	found := false
	var initial []string
	for _, m := range members {
		if !m.learner {
			s.Voting++
			if m.name != "" {
				s.Started++
			}
		}
		name := m.name
		mine := len(m.peerURLs) > 0 && m.peerURLs[0] == peerURL
		if mine {
			if m.name != "" {
				return nil // started: kubeadm's own retry will find it
			}
			found, s.ID, name = true, m.id, self
		}
		if name == "" {
			name = strconv.FormatUint(m.id, 16)
		}
		if len(m.peerURLs) > 0 {
			initial = append(initial, name+"="+m.peerURLs[0])
		}
	}
	if !found {
		return nil
	}
	s.InitialCluster = strings.Join(initial, ",")
	return &s
}

// RemoveMember removes member id through the etcd of the control planes before o.Node, trying
// each once.
func RemoveMember(ctx context.Context, o Options, id uint64) error {
	o = o.withDefaults()
	p, cps, err := memberProber(o)
	if err != nil {
		return err
	}
	if len(cps) == 0 {
		return fmt.Errorf("%s is the first control plane: there is no etcd to remove a member through", o.Node)
	}
	var errs []string
	for _, cp := range cps {
		err := p.withEtcd(ctx, cp, func(ctx context.Context, cli *clientv3.Client) error {
			_, err := cli.MemberRemove(ctx, id)
			return err
		})
		if err == nil {
			return nil
		}
		errs = append(errs, cp.Etcd()+": "+short(err))
	}
	return fmt.Errorf("removing etcd member %x: %s", id, strings.Join(errs, "; "))
}

// memberProber mints short-lived client certificates and returns a prober with the control
// planes before o.Node.
func memberProber(o Options) (*prober, []ControlPlane, error) {
	cps, err := Earlier(&o.Config.Cluster, o.Node)
	if err != nil || len(cps) == 0 {
		return nil, nil, err
	}
	creds, err := mint(o.Config.Secrets, o.Node, time.Now(), certMargin)
	if err != nil {
		return nil, nil, fmt.Errorf("client certificates for etcd: %w", err)
	}
	if o.Endpoint == "" {
		// Only etcd is asked here; the API client needs some host.
		o.Endpoint = cps[0].API(&o.Config.Cluster)
	}
	p, err := newProber(o, creds)
	return p, cps, err
}

// withEtcd calls f with a client of the etcd at cp's address, the call bounded by p.timeout.
func (p *prober) withEtcd(ctx context.Context, cp ControlPlane, f func(context.Context, *clientv3.Client) error) error {
	cli, err := p.etcdClient("https://" + p.dial(cp.Etcd()))
	if err != nil {
		return err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return f(cctx, cli)
}

// etcdClient is a client of one etcd endpoint with the minted etcd client certificate.
func (p *prober) etcdClient(endpoint string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, DialTimeout: p.timeout, Logger: zap.NewNop(),
		TLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.creds.etcdCAs, Certificates: []tls.Certificate{p.creds.etcdPair}},
	})
}
