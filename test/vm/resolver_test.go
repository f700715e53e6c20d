package vm_test

import (
	"errors"
	"net"
	"runtime"
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
	seg := vm.NewBridgedSegment(t, vm.BridgeOptions{HostAddress: "10.77.9.1/24", DHCPRange: "10.77.9.100,10.77.9.149"})

	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 0x6b73, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("registry-1.docker.io."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
	packed, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan answer, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in the segment's namespace
		if err := vm.EnterNamespace(seg.Namespace()); err != nil {
			ch <- answer{err: err}
			return
		}
		ch <- ask(packed)
	}()
	a := <-ch
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.h.ID != q.ID || !a.h.Response || a.h.RCode != dnsmessage.RCodeRefused {
		t.Errorf("segment resolver answered %+v; want a REFUSED response to query %#x", a.h, q.ID)
	}
}

// answer is the header of the resolver's reply, or why there was none.
type answer struct {
	h   dnsmessage.Header
	err error
}

// ask sends the query to the segment's router and reads the answer's header. dnsmasq may still
// be starting, so a refused or unanswered send is tried again, 10 times at most, 1 s each.
func ask(packed []byte) (a answer) {
	for range 10 {
		a.err = func() error {
			c, err := net.Dial("udp", "10.77.9.1:53")
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
				return err
			}
			if _, err := c.Write(packed); err != nil {
				return err
			}
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err != nil {
				return err
			}
			var p dnsmessage.Parser
			a.h, err = p.Start(buf[:n])
			return err
		}()
		if a.err == nil {
			return a
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.err = errors.Join(errors.New("the segment's resolver 10.77.9.1:53 did not answer in 10 tries"), a.err)
	return a
}
