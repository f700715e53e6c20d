package discovery

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

const helperEnv = "KSBOOT_DISCOVERY_HELPER"

// helperConfig tells a helper process which node to be.
type helperConfig struct {
	Mode string // announce, find, snapshot, watch, waitfor

	Cluster string
	IP      string // the node's address (set by lan.start)
	// Trust is the CA PEM the node got in its seed.
	Trust string
	// ID is announced instead of Trust's id when set: a forger copies the victim's.
	ID string

	// announce
	Node, Role, Phase string
	ServeCA, ServeKey string // the API server's certificate is issued by this CA (maybe not Trust)
	APIPort           int

	// find, waitfor, watch
	TimeoutMS int
	Interface string
	Fast      bool     // shortened back-off (fastTuning)
	WaitNode  string   // waitfor
	WaitPhase []string // waitfor
}

// helperResult is what a finder prints when it is done.
type helperResult struct {
	Endpoint   Endpoint `json:"endpoint"`
	Error      string   `json:"error,omitempty"`
	Untrusted  bool     `json:"untrusted,omitempty"` // errors.As(err, *UntrustedError)
	NotFound   bool     `json:"notFound,omitempty"`
	ElapsedMS  int64    `json:"elapsedMS"`
	Rounds     int      `json:"rounds"`               // rounds seen by Options.Progress, the successful one included
	Rejections []string `json:"rejections,omitempty"` // as reported through Options.Progress
	Peers      []string `json:"peers,omitempty"`      // waitfor
}

type helperReady struct {
	Ready    bool   `json:"ready"`
	Instance string `json:"instance"`
	Phase    string `json:"phase,omitempty"`
}

// TestHelperProcess is not a test: the namespace tests run the test binary again inside a
// network namespace with helperEnv set, and this function becomes that node.
func TestHelperProcess(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		return
	}
	var cfg helperConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "helper: bad config: %v\n", err)
		os.Exit(2)
	}
	if err := runHelper(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", cfg.Mode, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runHelper(cfg helperConfig) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := Options{Cluster: cfg.Cluster, CAPEM: []byte(cfg.Trust), ID: cfg.ID, Interface: cfg.Interface,
		Timeout: time.Duration(cfg.TimeoutMS) * time.Millisecond, Logger: logger}
	if cfg.Fast {
		opts.tune = fastTuning
	}
	out := json.NewEncoder(os.Stdout)
	if cfg.Mode != "announce" && cfg.Mode != "watch" {
		// The test keeps stdin open while it wants the helper; EOF means it is gone.
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			os.Exit(3)
		}()
	}
	switch cfg.Mode {
	case "announce":
		return helperAnnounce(cfg, opts, out)
	case "find":
		var rejections []string
		var rounds int
		opts.Progress = func(p Progress) {
			rounds = p.Round
			for _, r := range p.Rejected {
				if s := r.String(); !containsString(rejections, s) {
					rejections = append(rejections, s)
				}
			}
		}
		start := time.Now()
		ep, err := Find(context.Background(), opts)
		res := helperResult{Endpoint: ep, ElapsedMS: time.Since(start).Milliseconds(), Rounds: rounds, Rejections: rejections}
		if err != nil {
			var u *UntrustedError
			var nf *NotFoundError
			res.Error, res.Untrusted, res.NotFound = err.Error(), errors.As(err, &u), errors.As(err, &nf)
		}
		return out.Encode(res)
	case "waitfor":
		start := time.Now()
		peers, err := WaitFor(context.Background(), opts, NodeInPhase(cfg.WaitNode, cfg.WaitPhase...))
		res := helperResult{ElapsedMS: time.Since(start).Milliseconds()}
		for _, p := range peers {
			res.Peers = append(res.Peers, p.Node+"="+p.Phase)
		}
		if err != nil {
			res.Error = err.Error()
		}
		return out.Encode(res)
	case "snapshot":
		tab, err := Snapshot(context.Background(), opts)
		if err != nil {
			return err
		}
		return out.Encode(tab)
	case "watch":
		// Watch until stdin closes, printing every table it produces.
		ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
		defer cancel()
		go func() {
			_, _ = bufio.NewReader(os.Stdin).ReadString(0)
			cancel()
		}()
		return Watch(ctx, opts, 500*time.Millisecond, func(tab Table) error { return out.Encode(tab) })
	}
	return fmt.Errorf("unknown mode %q", cfg.Mode)
}

// helperAnnounce is one node: a TLS "API server" (when it has a serving CA) and its announcement.
// stdin commands change the announcement: "phase X", "error X", "api X", "close".
func helperAnnounce(cfg helperConfig, opts Options, out *json.Encoder) error {
	ip := net.ParseIP(cfg.IP)
	a := Announcement{Node: cfg.Node, Role: cfg.Role, Phase: cfg.Phase, Addrs: []net.IP{ip}}
	if cfg.ServeCA != "" {
		ca, err := parseTestCA([]byte(cfg.ServeCA), []byte(cfg.ServeKey))
		if err != nil {
			return err
		}
		cert, err := ca.serverCert([]net.IP{ip}, certOpts{})
		if err != nil {
			return err
		}
		addr := net.JoinHostPort(cfg.IP, fmt.Sprint(cfg.APIPort))
		ln, err := serveTLS(addr, cert)
		if err != nil {
			return err
		}
		defer ln.Close()
		a.API = addr
	}
	an, err := Announce(opts, a)
	if err != nil {
		return err
	}
	defer an.Close()
	if err := out.Encode(helperReady{Ready: true, Instance: an.Instance(), Phase: cfg.Phase}); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "phase":
			an.SetPhase(arg)
		case "error":
			an.SetError(arg)
		case "api":
			if err := an.SetAPI(arg); err != nil {
				return err
			}
		case "close":
			return nil
		default:
			return fmt.Errorf("unknown command %q", cmd)
		}
		if err := out.Encode(helperReady{Ready: true, Instance: an.Instance(), Phase: an.Record().Phase}); err != nil {
			return err
		}
	}
	return nil
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
