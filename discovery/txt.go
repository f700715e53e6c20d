package discovery

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The TXT schema of a ksboot announcement. Everything a node says about itself lives here, in one
// place, so that the announcer and every reader agree on it. DNS-SD (RFC 6763 §6) rules apply:
// each entry is "key=value", keys are case-insensitive, the first occurrence of a key wins, and
// unknown keys are ignored so that a newer ksboot can add keys without breaking older readers.
// Only a change of meaning bumps v=.
const (
	// SchemaVersion is the value of the v= key this ksboot writes and understands.
	SchemaVersion = "1"

	keyVersion = "v"
	keyCluster = "cluster"
	keyID      = "id"
	keyNode    = "node"
	keyRole    = "role"
	keyPhase   = "phase"
	keyAPI     = "api"
	keyError   = "err"
	// keyConsole carries the KubeSphere console URL once the init node has deployed it, so that
	// `ksboot watch` shows where to log in.
	keyConsole = "console"
	keyAge     = "age"

	// MaxTXTEntry is the longest "key=value" entry we write. DNS caps one TXT string at 255 bytes
	// (one length octet); staying strictly below leaves no room for off-by-one disagreements
	// between implementations.
	MaxTXTEntry = 254

	// idLen is the length of cluster.ClusterID: the first 16 hex digits of the CA pin.
	idLen = 16
)

// Record is one node's announcement, decoded. It is what travels in the TXT record.
type Record struct {
	Cluster string // metadata.name of the cluster
	ID      string // first 16 hex digits of the cluster CA pin (cluster.ClusterID)
	Node    string // node (host) name
	Role    string // "control-plane" or "worker"
	Phase   string // bootstrap phase the node is in
	API     string // host:port of an API server that answers; control planes only, once it does
	Error   string // the node's last error, if any; truncated to fit one TXT entry
	Console string // KubeSphere console URL, announced by the init node once KubeSphere is up
	// InPhase is how long the node has been in Phase, measured by the node's own monotonic clock
	// when it answered. Nodes that boot before NTP has run disagree about wall-clock time, so an
	// age travels instead of a timestamp.
	InPhase time.Duration
}

// EncodeTXT renders the record as TXT entries (raw bytes, before DNS presentation escaping).
// Fields that identify the node must fit as they are: truncating a cluster name or an address
// would make the announcement lie. Free text (the error, the phase) is cleaned of control
// characters and truncated instead, so that a long error message never silences a node.
func (r Record) EncodeTXT() ([]string, error) {
	if err := r.validateIdentity(); err != nil {
		return nil, err
	}
	out := []string{keyVersion + "=" + SchemaVersion}
	for _, kv := range []struct{ k, v string }{
		{keyCluster, r.Cluster}, {keyID, r.ID}, {keyNode, r.Node}, {keyRole, r.Role},
	} {
		e := kv.k + "=" + kv.v
		if len(e) > MaxTXTEntry {
			return nil, fmt.Errorf("announcement field %s is %d bytes long; at most %d fit in one mDNS TXT entry", kv.k, len(kv.v), MaxTXTEntry-len(kv.k)-1)
		}
		out = append(out, e)
	}
	out = append(out, fitEntry(keyPhase, r.Phase))
	if r.API != "" {
		e := keyAPI + "=" + r.API
		if len(e) > MaxTXTEntry {
			return nil, fmt.Errorf("announced API address %q is too long for one mDNS TXT entry", r.API)
		}
		out = append(out, e)
	}
	if r.Error != "" {
		out = append(out, fitEntry(keyError, r.Error))
	}
	if r.Console != "" {
		e := keyConsole + "=" + r.Console
		if len(e) > MaxTXTEntry {
			return nil, fmt.Errorf("announced console URL %q is too long for one mDNS TXT entry", r.Console)
		}
		out = append(out, e)
	}
	if r.InPhase > 0 {
		out = append(out, keyAge+"="+strconv.FormatInt(int64(r.InPhase/time.Second), 10))
	}
	return out, nil
}

func (r Record) validateIdentity() error {
	switch {
	case r.Cluster == "":
		return errors.New("the announcement needs the cluster name")
	case r.Node == "":
		return errors.New("the announcement needs the node name")
	case r.Role == "":
		return errors.New("the announcement needs the node's role")
	}
	if !validID(r.ID) {
		return fmt.Errorf("cluster id %q is not %d lowercase hex digits (the start of the CA pin)", r.ID, idLen)
	}
	for _, f := range []struct{ name, v string }{{"cluster name", r.Cluster}, {"node name", r.Node}, {"role", r.Role}} {
		if i := strings.IndexFunc(f.v, notPrintable); i >= 0 {
			return fmt.Errorf("the %s %q contains a control character", f.name, f.v)
		}
	}
	if r.API != "" {
		if err := validHostPort(r.API); err != nil {
			return fmt.Errorf("announced API address: %w", err)
		}
	}
	return nil
}

// fitEntry makes "key=value" printable on one line and no longer than MaxTXTEntry, cutting at a
// rune boundary and marking the cut with "...".
func fitEntry(key, value string) string {
	value = strings.Map(func(r rune) rune {
		if notPrintable(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(value, "?"))
	room := MaxTXTEntry - len(key) - 1
	if len(value) <= room {
		return key + "=" + value
	}
	cut := room - len("...")
	for cut > 0 && !utf8.RuneStart(value[cut]) {
		cut--
	}
	return key + "=" + value[:cut] + "..."
}

func notPrintable(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// DecodeTXT parses the TXT entries of an announcement (raw bytes, already unescaped from DNS
// presentation format). It rejects announcements of another schema version and ones that lack
// the fields needed to tell clusters apart; it never trusts anything it decodes: addresses are
// only candidates until TLS verification.
func DecodeTXT(entries []string) (Record, error) {
	fields := map[string]string{}
	for _, e := range entries {
		k, v, _ := strings.Cut(e, "=")
		k = strings.ToLower(k)
		if k == "" { // RFC 6763 §6.4: an entry with no key is ignored
			continue
		}
		if _, dup := fields[k]; !dup { // RFC 6763 §6.4: the first occurrence wins
			fields[k] = v
		}
	}
	v, ok := fields[keyVersion]
	if !ok {
		return Record{}, errors.New("not a ksboot announcement (no v= entry)")
	}
	if v != SchemaVersion {
		return Record{}, fmt.Errorf("announcement schema v=%q is not understood by this ksboot (it speaks v=%s); use the same ksboot version on every node", v, SchemaVersion)
	}
	r := Record{
		Cluster: fields[keyCluster], ID: fields[keyID], Node: fields[keyNode], Role: fields[keyRole],
		Phase: fields[keyPhase], API: fields[keyAPI], Error: fields[keyError], Console: fields[keyConsole],
	}
	for _, req := range []struct{ k, v string }{{keyCluster, r.Cluster}, {keyID, r.ID}, {keyNode, r.Node}, {keyRole, r.Role}} {
		if req.v == "" {
			return Record{}, fmt.Errorf("announcement lacks %s=", req.k)
		}
	}
	if !validID(r.ID) {
		return Record{}, fmt.Errorf("announcement id=%q is not %d lowercase hex digits", r.ID, idLen)
	}
	if r.API != "" {
		if err := validHostPort(r.API); err != nil {
			return Record{}, fmt.Errorf("announcement api=%q: %w", r.API, err)
		}
	}
	if a, ok := fields[keyAge]; ok {
		secs, err := strconv.ParseUint(a, 10, 32)
		if err != nil {
			return Record{}, fmt.Errorf("announcement age=%q is not a number of seconds", a)
		}
		r.InPhase = time.Duration(secs) * time.Second
	}
	return r, nil
}

func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for _, c := range []byte(id) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func validHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", hp)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q has no valid port", hp)
	}
	return nil
}

// escapeTXT turns a raw TXT entry into the presentation format github.com/miekg/dns packs: a
// backslash starts an escape there ("\\", "\DDD"), so a literal one must be doubled or it would
// swallow the next character on the wire.
func escapeTXT(raw string) string {
	return strings.ReplaceAll(raw, `\`, `\\`)
}

// unescapeTXT reverses the presentation format miekg/dns produces when it unpacks a TXT string:
// '"' and '\' arrive as `\"` and `\\`, and bytes outside printable ASCII as `\DDD` (decimal).
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0'); n <= 255 {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		i++
		b.WriteByte(s[i])
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
