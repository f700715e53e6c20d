package vm_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/ksboot/ksboot/test/vm"
)

// TestBridgedSegmentResolver asks the bridged segment's dnsmasq, from inside the segment's
// namespace, for a name outside it: the resolver must answer (REFUSED: it has no upstream and
// forwards nothing), because a nameserver that never answers made CoreDNS on a slow node take
// its own probe resends for a forwarding loop and exit (e2e run 21).
func TestBridgedSegmentResolver(t *testing.T) {
	seg := vm.NewBridgedSegment(t, vm.BridgeOptions{HostAddress: resolver + "/24", DHCPRange: "10.77.9.100,10.77.9.149"})

	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 0x6b73, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("outside.example."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
	packed, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	h, err := vm.InNamespace(seg.Namespace(), func() (dnsmessage.Header, error) { return ask(packed) })
	if err != nil {
		t.Fatal(err)
	}
	if h.ID != q.ID || !h.Response || h.RCode != dnsmessage.RCodeRefused {
		t.Errorf("segment resolver answered %+v; want a REFUSED response to query %#x", h, q.ID)
	}
}

// resolver is the segment's router, where dnsmasq listens.
const resolver = "10.77.9.1"

// ask sends the query to the segment's router and reads the answer's header. dnsmasq may still
// be starting, so a refused or unanswered send is tried again, 10 times at most, 1 s each.
func ask(packed []byte) (h dnsmessage.Header, err error) {
	for range 10 {
		h, err = func() (dnsmessage.Header, error) {
			c, err := net.Dial("udp", net.JoinHostPort(resolver, "53"))
			if err != nil {
				return h, err
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
				return h, err
			}
			if _, err := c.Write(packed); err != nil {
				return h, err
			}
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err != nil {
				return h, err
			}
			var p dnsmessage.Parser
			return p.Start(buf[:n])
		}()
		if err == nil {
			return h, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return h, errors.Join(errors.New("the segment's resolver "+resolver+":53 did not answer in 10 tries"), err)
}
