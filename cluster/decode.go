package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Source remembers where every field of a decoded file stands, so that validation (which works on
// the typed value) can still point at a line.
type Source struct {
	File  string
	lines map[string]int
}

// Line returns the line of the field path, or of its nearest ancestor that is in the file
// (a defaulted field has no line of its own; its parent does).
func (s *Source) Line(path string) int {
	if s == nil {
		return 0
	}
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := s.lines[p]; ok {
			return l
		}
	}
	return 0
}

func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndex(p, "["); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}

// problem builds a Problem located at path.
func (s *Source) problem(path string, warning bool, format string, args ...any) Problem {
	file := ""
	if s != nil {
		file = s.File
	}
	return Problem{File: file, Line: s.Line(path), Field: path, Message: fmt.Sprintf(format, args...), Warning: warning}
}

// Load reads, decodes, defaults and validates a cluster file. Warnings are returned even when the
// file is valid; an invalid file yields an *InvalidError listing every error.
func Load(path string) (*Cluster, Problems, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading cluster file: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for bytes already read; name is used in messages.
func Parse(name string, data []byte) (*Cluster, Problems, error) {
	var c Cluster
	src, decodeProblems, err := decodeStrict(name, data, &c)
	if err != nil {
		return nil, nil, err
	}
	// Validation runs even when decoding found problems, so the user sees everything at once;
	// a field that failed to decode is not reported a second time.
	SetDefaults(&c)
	ps := decodeProblems
	bad := map[string]bool{}
	for _, p := range decodeProblems {
		bad[p.Field] = true
	}
	for _, p := range Validate(&c, src) {
		if !bad[p.Field] {
			ps = append(ps, p)
		}
	}
	if err := ps.Err(); err != nil {
		return nil, ps, err
	}
	return &c, ps, nil
}

// Decode parses a cluster file strictly: unknown fields, wrong types, duplicate keys and extra
// documents are all errors, reported together with their lines. It does not default or validate.
func Decode(name string, data []byte) (*Cluster, *Source, error) {
	var c Cluster
	src, ps, err := decodeStrict(name, data, &c)
	if err != nil {
		return nil, src, err
	}
	if err := ps.Err(); err != nil {
		return nil, src, err
	}
	return &c, src, nil
}

// decodeStrict decodes a single YAML document into out (a pointer to a struct) with our own
// walker. yaml.v3's KnownFields stops at the first unknown field and reports no path; walking the
// node tree ourselves reports every problem at once with the field path and line. A YAML syntax
// error is returned as err; field-level problems come back as Problems with out filled as far as
// possible.
func decodeStrict(name string, data []byte, out any) (*Source, Problems, error) {
	src := &Source{File: name, lines: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return src, nil, &InvalidError{Problems: Problems{{File: name, Message: "the file is empty"}}}
		}
		return src, nil, &InvalidError{Problems: Problems{yamlSyntaxProblem(name, err)}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return src, nil, &InvalidError{Problems: Problems{{File: name, Line: extra.Line,
			Message: "the file holds more than one YAML document; a ksboot file is one document " +
				"(KubeSphere's ClusterConfiguration goes under spec.kubesphere.configuration)"}}}
	} else if !errors.Is(err, io.EOF) {
		return src, nil, &InvalidError{Problems: Problems{yamlSyntaxProblem(name, err)}}
	}
	w := walker{src: src}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	w.decode(root, reflect.ValueOf(out).Elem(), "")
	return src, w.problems, nil
}

func yamlSyntaxProblem(name string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	// yaml.v3 syntax errors read "yaml: line N: message".
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, convErr := strconv.Atoi(rest[:i]); convErr == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return Problem{File: name, Line: line, Message: "not valid YAML: " + msg}
}

type walker struct {
	src      *Source
	problems Problems
	depth    int
}

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	field := path
	w.problems = append(w.problems, Problem{File: w.src.File, Line: n.Line, Field: field, Message: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode fills v from n, recording the line of every path it sees.
func (w *walker) decode(n *yaml.Node, v reflect.Value, path string) {
	// Aliases could make a document expand without bound; cap the depth of what we follow.
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > 64 {
		w.fail(n, path, "nesting is too deep")
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			w.fail(n, path, "unknown alias")
			return
		}
		w.decode(n.Alias, v, path)
		return
	}
	if path != "" {
		if _, seen := w.src.lines[path]; !seen {
			w.src.lines[path] = n.Line
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the zero value, as yaml.v3 does
	}
	switch v.Kind() {
	case reflect.Pointer:
		// An optional block (controlPlaneEndpoint.kubeVIP): present means set.
		p := reflect.New(v.Type().Elem())
		w.decode(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		w.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "expected a list, found %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			w.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if v.Type().Elem().Kind() == reflect.Interface {
			// Free-form passthrough (KubeSphere configuration): any YAML mapping is accepted.
			if n.Kind != yaml.MappingNode {
				w.fail(n, path, "expected a mapping, found %s", describe(n))
				return
			}
			m := reflect.New(v.Type())
			if err := n.Decode(m.Interface()); err != nil {
				w.fail(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
				return
			}
			v.Set(m.Elem())
			w.passthroughLines(n, path, 0)
			return
		}
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "expected a mapping, found %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := k.Value
			if m.MapIndex(reflect.ValueOf(key)).IsValid() {
				w.fail(k, join(path, key), "duplicate key %q", key)
				continue
			}
			elem := reflect.New(v.Type().Elem()).Elem()
			w.decode(val, elem, join(path, key))
			m.SetMapIndex(reflect.ValueOf(key), elem)
		}
		v.Set(m)
	default:
		if n.Kind != yaml.ScalarNode {
			w.fail(n, path, "expected a single value, found %s", describe(n))
			return
		}
		target := reflect.New(v.Type())
		if err := n.Decode(target.Interface()); err != nil {
			w.fail(n, path, "cannot use %q: expected %s", n.Value, kindName(v.Kind()))
			return
		}
		v.Set(target.Elem())
	}
}

// passthroughLines records the lines of the keys inside a free-form mapping, so problems
// found in it later (validate's KubeSphere checks) point at their line. Only mappings are
// followed, to the decoder's depth limit; aliases are not.
func (w *walker) passthroughLines(n *yaml.Node, path string, depth int) {
	if n.Kind != yaml.MappingNode || depth > 64 {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fp := join(path, k.Value)
		if _, seen := w.src.lines[fp]; !seen {
			w.src.lines[fp] = k.Line
		}
		w.passthroughLines(val, fp, depth+1)
	}
}

func (w *walker) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		w.fail(n, path, "expected a mapping, found %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		fp := join(path, key)
		if seen[key] {
			w.fail(k, fp, "duplicate key %q", key)
			continue
		}
		seen[key] = true
		if _, known := w.src.lines[fp]; !known {
			w.src.lines[fp] = k.Line // the key's line reads better than its value's
		}
		idx, ok := fields[key]
		if !ok {
			w.fail(k, fp, "unknown field%s", suggest(key, fields))
			continue
		}
		w.decode(val, v.Field(idx), fp)
	}
}

// yamlFields maps yaml key → struct field index for the exported fields of t.
func yamlFields(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = i
	}
	return out
}

// renamed lists KubeKey field names that ksboot spells differently or dropped on purpose, so the
// error says what to do instead of only "unknown".
var renamed = map[string]string{
	"master":          "use control-plane (KubeKey's old name for the role)",
	"user":            "ksboot uses no SSH: nodes configure themselves from their seed",
	"password":        "ksboot uses no SSH: nodes configure themselves from their seed",
	"privateKeyPath":  "ksboot uses no SSH: nodes configure themselves from their seed",
	"internalAddress": "use address (the static address in CIDR form)",
}

func suggest(key string, fields map[string]int) string {
	if hint, ok := renamed[key]; ok {
		return ": " + hint
	}
	for old, hint := range renamed {
		if _, isField := fields[old]; !isField && editDistance(strings.ToLower(key), strings.ToLower(old)) <= 2 && len(key) > 4 {
			return fmt.Sprintf(" (did you mean %q? %s)", old, hint)
		}
	}
	best, bestD := "", 3
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if d := editDistance(strings.ToLower(key), strings.ToLower(name)); d < bestD {
			best, bestD = name, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return fmt.Sprintf(" (known fields: %s)", strings.Join(names, ", "))
}

// editDistance is the Levenshtein distance; it is only used for "did you mean" hints on short keys.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint16, reflect.Uint32:
		return "a whole number"
	case reflect.String:
		return "a string"
	}
	return k.String()
}
