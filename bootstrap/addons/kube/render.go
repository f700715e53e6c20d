package kube

import (
	"bytes"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/ksboot/ksboot/internal/atomicfile"
)

// MarshalYAML renders objects as one multi-document YAML stream, in order. It uses
// sigs.k8s.io/yaml, which honours the json tags of Kubernetes types (yaml.v3 ignores them);
// keys come out sorted, so the output is stable for golden files.
func MarshalYAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var buf bytes.Buffer
	for i, u := range objs {
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("rendering %s: %w", Describe(u), err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// ParseYAML splits a multi-document YAML stream into objects, skipping empty documents (and
// documents that are only comments), as kubectl apply -f does.
func ParseYAML(name string, data []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for i, doc := range splitDocuments(data) {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i+1, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("%s: document %d has no apiVersion or kind", name, i+1)
		}
		if u.GetKind() == "List" {
			items, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", name, i+1, err)
			}
			for j := range items.Items {
				out = append(out, &items.Items[j])
			}
			continue
		}
		out = append(out, u)
	}
	return out, nil
}

// splitDocuments splits on lines that are exactly "---" (optionally followed by a comment),
// the YAML document marker.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		trimmed := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(trimmed, []byte("--- ")) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	return append(docs, cur.Bytes())
}

// WriteFile writes data to path with mode perm atomically, creating the directory (0755).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm, 0o755)
}
