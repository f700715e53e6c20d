package discovery

import (
	"strings"
	"testing"
	"time"
)

func validRecord() Record {
	return Record{Cluster: "sample", ID: "0123456789abcdef", Node: "cp1", Role: "control-plane", Phase: "kubeadm"}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Record)
	}{
		{"minimal", func(*Record) {}},
		{"with api", func(r *Record) { r.API = "10.0.0.2:6443" }},
		{"with ipv6 api", func(r *Record) { r.API = "[fd00::2]:6443" }},
		{"with error", func(r *Record) { r.Error = `kubeadm join: "timeout" \ retrying` }},
		{"with age", func(r *Record) { r.InPhase = 75 * time.Second }},
		{"unicode error", func(r *Record) { r.Error = "拉取镜像失败: ImagePullBackOff" }},
		{"worker", func(r *Record) { r.Node, r.Role, r.Phase = "worker-01", "worker", "discover" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validRecord()
			tc.edit(&r)
			txt, err := r.EncodeTXT()
			if err != nil {
				t.Fatalf("EncodeTXT: %v", err)
			}
			for _, e := range txt {
				if len(e) > MaxTXTEntry {
					t.Errorf("entry %q is %d bytes", e, len(e))
				}
			}
			got, err := DecodeTXT(txt)
			if err != nil {
				t.Fatalf("DecodeTXT(%q): %v", txt, err)
			}
			if got != r {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
			}
			// The same through miekg/dns presentation escaping, as it travels.
			esc := make([]string, len(txt))
			for i, e := range txt {
				esc[i] = unescapeTXT(presentation(escapeTXT(e)))
			}
			if got, err := DecodeTXT(esc); err != nil || got != r {
				t.Errorf("through escaping: %+v, %v", got, err)
			}
		})
	}
}

// presentation mimics what miekg/dns does to a TXT string between Pack and Unpack: it packs the
// escaped form to raw bytes and unpacks raw bytes to an escaped form.
func presentation(escaped string) string {
	var raw []byte
	for i := 0; i < len(escaped); i++ {
		if escaped[i] == '\\' && i+1 < len(escaped) {
			i++
		}
		raw = append(raw, escaped[i])
	}
	var b strings.Builder
	for _, c := range raw {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			b.WriteString("\\" + string('0'+c/100) + string('0'+c/10%10) + string('0'+c%10))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func TestEncodeRejectsAndTruncates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(*Record)
		wantErr string
	}{
		{"no cluster", func(r *Record) { r.Cluster = "" }, "cluster name"},
		{"no node", func(r *Record) { r.Node = "" }, "node name"},
		{"no role", func(r *Record) { r.Role = "" }, "role"},
		{"short id", func(r *Record) { r.ID = "0123" }, "16 lowercase hex"},
		{"uppercase id", func(r *Record) { r.ID = "0123456789ABCDEF" }, "16 lowercase hex"},
		{"cluster too long", func(r *Record) { r.Cluster = strings.Repeat("a", 250) }, "at most 246 fit"},
		{"control char in node", func(r *Record) { r.Node = "cp\n1" }, "control character"},
		{"api without port", func(r *Record) { r.API = "10.0.0.2" }, "host:port"},
		{"api port zero", func(r *Record) { r.API = "10.0.0.2:0" }, "no valid port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validRecord()
			tc.edit(&r)
			_, err := r.EncodeTXT()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("EncodeTXT error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}

	t.Run("long error is truncated at a rune boundary", func(t *testing.T) {
		r := validRecord()
		r.Error = strings.Repeat("镜", 200) + "\nsecond line"
		txt, err := r.EncodeTXT()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeTXT(txt)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(got.Error, "...") || len("err="+got.Error) > MaxTXTEntry {
			t.Errorf("error not truncated to fit: %d bytes %q", len(got.Error), got.Error)
		}
		if !strings.HasPrefix(got.Error, "镜镜") || strings.ContainsRune(got.Error, '\uFFFD') {
			t.Errorf("truncation broke a rune: %q", got.Error)
		}
	})
	t.Run("control characters in error become spaces", func(t *testing.T) {
		r := validRecord()
		r.Error = "line one\nline two\ttab"
		txt, _ := r.EncodeTXT()
		got, _ := DecodeTXT(txt)
		if got.Error != "line one line two tab" {
			t.Errorf("got %q", got.Error)
		}
	})
}

func TestDecodeTXT(t *testing.T) {
	base := []string{"v=1", "cluster=sample", "id=0123456789abcdef", "node=cp1", "role=control-plane", "phase=init"}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	for _, tc := range []struct {
		name    string
		in      []string
		wantErr string
		check   func(t *testing.T, r Record)
	}{
		{name: "valid", in: base},
		{name: "unknown keys ignored", in: with("future=yes", "flag"), check: func(t *testing.T, r Record) {
			if r.Node != "cp1" {
				t.Errorf("node %q", r.Node)
			}
		}},
		{name: "keys are case-insensitive", in: []string{"V=1", "Cluster=sample", "ID=0123456789abcdef", "NODE=cp1", "Role=worker"}},
		{name: "first occurrence wins", in: with("node=evil"), check: func(t *testing.T, r Record) {
			if r.Node != "cp1" {
				t.Errorf("node %q, want the first one", r.Node)
			}
		}},
		{name: "empty key ignored", in: with("=x")},
		{name: "value keeps later equals signs", in: with("err=a=b"), check: func(t *testing.T, r Record) {
			if r.Error != "a=b" {
				t.Errorf("err %q", r.Error)
			}
		}},
		{name: "age", in: with("age=42"), check: func(t *testing.T, r Record) {
			if r.InPhase != 42*time.Second {
				t.Errorf("age %v", r.InPhase)
			}
		}},
		{name: "not ksboot", in: []string{"path=/"}, wantErr: "no v= entry"},
		{name: "future version", in: []string{"v=2", "cluster=x"}, wantErr: `v="2" is not understood`},
		{name: "missing id", in: []string{"v=1", "cluster=sample", "node=a", "role=worker"}, wantErr: "lacks id="},
		{name: "bad id", in: []string{"v=1", "cluster=sample", "id=zz", "node=a", "role=worker"}, wantErr: "16 lowercase hex"},
		{name: "bad api", in: with("api=nonsense"), wantErr: "api="},
		{name: "bad age", in: with("age=-1"), wantErr: "age="},
		{name: "empty", in: nil, wantErr: "no v= entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeTXT(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestUnescapeTXT(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:          "plain",
		`a\"b`:           `a"b`,
		`a\\b`:           `a\b`,
		`\229\134\128x`:  "\xe5\x86\x80x",
		`\256`:           "256", // not a byte: the backslash escapes the '2'
		`trailing\`:      `trailing\`,
		`\0`:             "0",
		`short\12`:       "short12",
		`\065\066\067`:   "ABC",
		`mixed \" \\ \t`: `mixed " \ t`,
	} {
		if got := unescapeTXT(in); got != want {
			t.Errorf("unescapeTXT(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecodeTXT feeds arbitrary TXT entries (separated by NUL) through the wire unescaping and
// the decoder: they must never panic, and whatever decodes must encode and decode to itself.
func FuzzDecodeTXT(f *testing.F) {
	f.Add("v=1\x00cluster=sample\x00id=0123456789abcdef\x00node=cp1\x00role=control-plane\x00phase=init\x00api=10.0.0.2:6443")
	f.Add("v=1\x00cluster=a\x00id=ffffffffffffffff\x00node=n\x00role=worker\x00err=\\229\\134\\128\x00age=5")
	f.Add("V=1\x00CLUSTER=x\x00id=0000000000000000\x00node=\\\"q\\\"\x00role=r\x00phase=")
	f.Add("v=2")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		entries := strings.Split(in, "\x00")
		for i := range entries {
			entries[i] = unescapeTXT(entries[i])
		}
		r, err := DecodeTXT(entries)
		if err != nil {
			return
		}
		txt, err := r.EncodeTXT()
		if err != nil {
			// Decoding is lenient where encoding is strict (control characters in names, long
			// fields from other writers); that is fine as long as nothing panics.
			return
		}
		r2, err := DecodeTXT(txt)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", txt, err)
		}
		want := r
		want.Phase = fitValue(keyPhase, r.Phase)
		if r.Error != "" {
			want.Error = fitValue(keyError, r.Error)
		}
		if r2 != want {
			t.Fatalf("round trip changed the record:\n got %+v\nwant %+v", r2, want)
		}
	})
}

func fitValue(key, v string) string { return strings.TrimPrefix(fitEntry(key, v), key+"=") }

// FuzzEscapeTXT checks that what we hand to miekg/dns comes back unchanged.
func FuzzEscapeTXT(f *testing.F) {
	f.Add(`plain`)
	f.Add(`back\slash "quoted" \065`)
	f.Add("\x00\x01\xff")
	f.Fuzz(func(t *testing.T, s string) {
		if got := unescapeTXT(presentation(escapeTXT(s))); got != s {
			t.Fatalf("escape round trip: %q became %q", s, got)
		}
	})
}
