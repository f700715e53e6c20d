package discovery

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"time"

	"github.com/ksboot/ksboot/cluster"
)

// Service is the DNS-SD service type every ksboot node announces.
const Service = "_ksboot._tcp"

// DefaultTimeout bounds a search whose context has no deadline and whose Options set none: long
// enough for a control plane to install its runtime and run kubeadm init, short enough that a
// node that can never see it fails with a message instead of hanging forever.
const DefaultTimeout = 30 * time.Minute

// Options say which cluster to look for, how to check it, and where to look.
type Options struct {
	// Cluster is the cluster name (metadata.name). Empty matches every cluster (watch only).
	Cluster string
	// ID is the cluster id (cluster.ClusterID of the CA pin). Empty means "derive it from CAPEM";
	// if CAPEM is empty too, announcements of every CA are accepted (watch only).
	ID string
	// CAPEM is the cluster CA certificate from the node's seed. Find and FindStatic refuse to
	// return an endpoint whose TLS certificate does not chain to it.
	CAPEM []byte
	// Pin is the expected CA pin ("sha256:<hex>"), kubeadm's discovery-token-ca-cert-hash. When
	// set, CAPEM must have exactly this pin: a seed whose two halves disagree is refused up front.
	Pin string
	// Interface restricts mDNS to one network interface (spec.discovery.interface).
	Interface string
	// IPv6 enables mDNS over IPv6 as well. Off by default: most installs are IPv4 and a
	// half-configured IPv6 stack only adds noise and delay.
	IPv6 bool
	// Timeout bounds Find, FindStatic and WaitFor on top of the context's own deadline.
	Timeout time.Duration
	// Logger receives progress lines (rate-limited) and the library's debug noise. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Progress, if set, is called after every query round of Find, FindStatic and WaitFor.
	Progress func(Progress)

	tune tuning
}

// tuning holds the timings of the search loop. Tests and the benchmark shorten them; product
// code uses the defaults.
type tuning struct {
	firstDelay             time.Duration // the first query waits firstDelay..6*firstDelay
	firstWindow, maxWindow time.Duration // how long one query collects answers
	firstGap, maxGap       time.Duration // pause between rounds (exponential back-off, jittered)
	dialTimeout            time.Duration // one TLS handshake
	progressEvery          time.Duration // at most one "still waiting" log line per this
}

var defaultTuning = tuning{
	// RFC 6762 §5.2: the first query waits a random 20-120 ms.
	firstDelay: 20 * time.Millisecond,
	// The announcer answers at once (hashicorp/mdns does not delay responses), so on a LAN the
	// answer arrives within milliseconds; 400 ms leaves room for a control plane busy running
	// kubeadm (an answer after the window is lost: the library cannot keep listening). Measured
	// on 2 loaded cores with 100 nodes querying at once, 300 ms made 1-4% of nodes query twice.
	// Later rounds listen longer in case the network is slow rather than empty.
	firstWindow: 400 * time.Millisecond, maxWindow: 1 * time.Second,
	// RFC 6762 §5.2 asks for at least a second between repeated queries and doubling after that;
	// we start faster because a node that is still booting waits on this, and stop doubling at 4 s
	// so that a control plane that appears late is found within a few seconds.
	firstGap: 200 * time.Millisecond, maxGap: 4 * time.Second,
	dialTimeout:   3 * time.Second,
	progressEvery: 15 * time.Second,
}

func (t tuning) orDefault() tuning {
	if t == (tuning{}) {
		return defaultTuning
	}
	return t
}

// OptionsFromNodeConfig builds the options a node uses to find its own cluster: the cluster name,
// the CA from the seed and its pin, and the discovery settings of the cluster file.
func OptionsFromNodeConfig(nc *cluster.NodeConfig) Options {
	return Options{
		Cluster:   nc.Cluster.Name(),
		ID:        cluster.ClusterID(nc.Secrets.CACertHash),
		CAPEM:     []byte(nc.Secrets.CACert),
		Pin:       nc.Secrets.CACertHash,
		Interface: nc.Cluster.Spec.Discovery.Interface,
		IPv6:      nc.Cluster.Spec.Discovery.IPv6,
	}
}

// trust is the parsed CA of the options.
type trust struct {
	ca  *x509.Certificate
	pin string
}

// trust parses CAPEM and checks it against Pin and ID. It is needed by everything that returns an
// endpoint.
func (o *Options) trust() (*trust, error) {
	if len(o.CAPEM) == 0 {
		return nil, errors.New("the cluster CA certificate is required to verify the control plane (secrets.caCert in the node's seed)")
	}
	block, _ := pem.Decode(o.CAPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("the cluster CA certificate is not PEM (want -----BEGIN CERTIFICATE-----)")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the cluster CA certificate: %w", err)
	}
	pin := cluster.CAPin(ca)
	if o.Pin != "" && o.Pin != pin {
		return nil, fmt.Errorf("the cluster CA certificate has pin %s but the seed expects %s; rebuild the seed from one secrets directory", pin, o.Pin)
	}
	if o.ID != "" && o.ID != cluster.ClusterID(pin) {
		return nil, fmt.Errorf("cluster id %s does not belong to the cluster CA (whose id is %s)", o.ID, cluster.ClusterID(pin))
	}
	return &trust{ca: ca, pin: pin}, nil
}

// normalized fills ID from the CA when it can and applies defaults.
func (o Options) normalized() Options {
	if o.ID == "" {
		switch {
		case o.Pin != "":
			o.ID = cluster.ClusterID(o.Pin)
		case len(o.CAPEM) > 0:
			if pin, err := cluster.CAPinFromPEM(o.CAPEM); err == nil {
				o.ID = cluster.ClusterID(pin)
			}
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.tune = o.tune.orDefault()
	return o
}

// libLogger routes hashicorp/mdns's std-logger lines ("[INFO] mdns: Failed to listen to both
// unicast and multicast on IPv6", ...) to debug level: they are noise on every host without
// IPv6, and its default is the process-wide std logger, which would print them on the console.
func (o Options) libLogger() *log.Logger {
	return slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug)
}

// iface resolves Options.Interface.
func (o Options) iface() (*net.Interface, error) {
	if o.Interface == "" {
		return nil, nil
	}
	ifi, err := net.InterfaceByName(o.Interface)
	if err != nil {
		return nil, fmt.Errorf("network interface %q (spec.discovery.interface): %w", o.Interface, err)
	}
	return ifi, nil
}

// withDeadline applies Timeout, or DefaultTimeout when neither it nor ctx sets a deadline, so
// that every wait in this package ends.
func (o Options) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.Timeout > 0 {
		return context.WithTimeout(ctx, o.Timeout)
	}
	if _, ok := ctx.Deadline(); !ok {
		return context.WithTimeout(ctx, DefaultTimeout)
	}
	return context.WithCancel(ctx)
}
