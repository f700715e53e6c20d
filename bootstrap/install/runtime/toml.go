package runtime

import (
	"fmt"
	"strconv"
	"strings"
)

// tomlWriter writes the small subset of TOML that containerd's files need: comments, tables
// with dotted (and quoted) keys, and key = value pairs of strings, booleans, integers and
// string arrays. It exists because no TOML encoder is in the module graph except as an
// indirect dependency, the files are small and fixed in shape, and a writer this size makes
// every emitted key a visible decision (containerd ignores unknown keys with only a warning,
// so a misspelt key would otherwise go unnoticed). Values are always quoted and escaped, so a
// registry password cannot break out of its string.
type tomlWriter struct {
	b strings.Builder
}

func (w *tomlWriter) comment(lines ...string) {
	for _, l := range lines {
		w.b.WriteString("# " + l + "\n")
	}
}

// table starts [k1.k2…]; keys that are not bare TOML keys are quoted.
func (w *tomlWriter) table(keys ...string) {
	if w.b.Len() > 0 {
		w.b.WriteString("\n")
	}
	quoted := make([]string, len(keys))
	for i, k := range keys {
		quoted[i] = tomlKey(k)
	}
	w.b.WriteString("[" + strings.Join(quoted, ".") + "]\n")
}

// kv writes one key = value line. Inside a table the line is indented by two spaces, as
// containerd's own `config default` does.
func (w *tomlWriter) kv(indent bool, key string, value any) {
	if indent {
		w.b.WriteString("  ")
	}
	w.b.WriteString(tomlKey(key) + " = " + tomlValue(value) + "\n")
}

func (w *tomlWriter) String() string { return w.b.String() }

func tomlKey(k string) string {
	bare := k != ""
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			bare = false
			break
		}
	}
	if bare {
		return k
	}
	// A literal string, as containerd's documentation writes plugin IDs, when it can hold
	// the key; a basic string with escapes otherwise.
	if !strings.ContainsAny(k, "'\n\r\t") && !hasControl(k) {
		return "'" + k + "'"
	}
	return tomlString(k)
}

func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return tomlString(v)
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case []string:
		parts := make([]string, len(v))
		for i, s := range v {
			parts[i] = tomlString(s)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	panic(fmt.Sprintf("tomlWriter: unsupported value type %T", v))
}

// tomlString is a TOML basic string: double quotes, with backslash, quote and every control
// character escaped.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}
