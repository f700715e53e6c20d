package artifacts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"slices"
	"strings"
)

// ManifestFile is the manifest's name at the top of a bundle.
const ManifestFile = "manifest.json"

// ManifestFormatVersion is the manifest format this package reads and writes. A bundle with a
// newer format is refused rather than half understood.
const ManifestFormatVersion = 1

// Manifest is a bundle's manifest.json: every file in the bundle with what it is and its
// sha256. See the package documentation for the format.
type Manifest struct {
	FormatVersion int `json:"formatVersion"`
	// KubernetesVersion is the release the bundle was made for; informational.
	KubernetesVersion string  `json:"kubernetesVersion,omitempty"`
	Artifacts         []Entry `json:"artifacts"`
}

// Entry is one file of a bundle.
type Entry struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
	Kind    Kind   `json:"kind"`
	// OS restricts a deb or rpm to one distribution: "<ID>-<VERSION_ID>" or "<ID>-<major>".
	OS     string `json:"os,omitempty"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	// Images are the references an image archive holds.
	Images []string `json:"images,omitempty"`
}

func (e Entry) String() string {
	s := fmt.Sprintf("%s %s %s", e.Kind, e.Name, e.Version)
	if e.Arch != "" {
		s += " (" + e.Arch + ")"
	}
	return s
}

// Artifact is the entry as an artifact request, for Source.Location and Source.Open.
func (e Entry) Artifact() Artifact {
	return Artifact{Name: e.Name, Version: e.Version, Arch: e.Arch, Kind: e.Kind}
}

var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseManifest decodes and checks a manifest: unknown fields, an unknown format version or
// kind, a malformed digest, an unsafe path and duplicate entries are errors. name is used in
// messages.
func ParseManifest(name string, data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("reading bundle manifest %s: %w", name, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading bundle manifest %s: trailing data after the manifest", name)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("reading bundle manifest %s: %w", name, err)
	}
	return &m, nil
}

// Validate checks a manifest; `ksboot bundle` calls it before writing one.
func (m *Manifest) Validate() error {
	if m.FormatVersion != ManifestFormatVersion {
		return fmt.Errorf("formatVersion %d is not supported (this ksboot reads %d)", m.FormatVersion, ManifestFormatVersion)
	}
	var problems []string
	type key struct {
		name, version, arch, os string
		kind                    Kind
	}
	seen := map[key]int{}
	for i, e := range m.Artifacts {
		at := fmt.Sprintf("artifacts[%d]", i)
		if e.Name == "" {
			problems = append(problems, at+": name is empty")
		}
		if !slices.Contains(kinds, e.Kind) {
			problems = append(problems, fmt.Sprintf("%s (%s): kind %q is not one of binary, tarball, image, deb, rpm, chart, manifest", at, e.Name, e.Kind))
		}
		if e.Version == "" {
			problems = append(problems, fmt.Sprintf("%s (%s): version is empty", at, e.Name))
		}
		if e.Arch != "" && e.Arch != "amd64" && e.Arch != "arm64" {
			problems = append(problems, fmt.Sprintf("%s (%s): arch %q is not amd64 or arm64", at, e.Name, e.Arch))
		}
		if (e.Kind == KindBinary || e.Kind == KindTarball) && e.Arch == "" {
			problems = append(problems, fmt.Sprintf("%s (%s): a %s needs an arch", at, e.Name, e.Kind))
		}
		if e.OS != "" && e.Kind != KindDeb && e.Kind != KindRPM {
			problems = append(problems, fmt.Sprintf("%s (%s): os is only for deb and rpm packages", at, e.Name))
		}
		if !fs.ValidPath(e.Path) || e.Path == "." || strings.Contains(e.Path, `\`) {
			problems = append(problems, fmt.Sprintf("%s (%s): path %q must be relative, slash-separated and without ..", at, e.Name, e.Path))
		}
		if !sha256Pattern.MatchString(e.SHA256) {
			problems = append(problems, fmt.Sprintf("%s (%s): sha256 %q is not 64 lowercase hex digits", at, e.Name, e.SHA256))
		}
		if e.Kind != KindImage && len(e.Images) > 0 {
			problems = append(problems, fmt.Sprintf("%s (%s): images is only for kind image", at, e.Name))
		}
		k := key{e.Name, strings.TrimPrefix(e.Version, "v"), e.Arch, e.OS, e.Kind}
		if j, dup := seen[k]; dup {
			problems = append(problems, fmt.Sprintf("%s (%s): duplicates artifacts[%d]", at, e.Name, j))
		}
		seen[k] = i
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Marshal encodes the manifest as `ksboot bundle` writes it: indented JSON with a final
// newline, entries in the order given.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encoding bundle manifest: %w", err)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding bundle manifest: %w", err)
	}
	return append(data, '\n'), nil
}

// Find returns the entry for an artifact: same name and kind, same version (ignoring a leading
// "v"), and the artifact's architecture or none.
func (m *Manifest) Find(a Artifact) (Entry, bool) {
	for _, e := range m.Artifacts {
		if e.Name == a.Name && e.Kind == a.Kind && SameVersion(e.Version, a.Version) && (e.Arch == a.Arch || e.Arch == "") {
			return e, true
		}
	}
	return Entry{}, false
}

// describe lists what the manifest has under a name, for "not in the bundle" messages.
func (m *Manifest) describe(name string) string {
	var have []string
	for _, e := range m.Artifacts {
		if e.Name == name {
			have = append(have, e.Version+"/"+e.Arch)
		}
	}
	if len(have) == 0 {
		return "the manifest has no " + name
	}
	return "the manifest has " + name + " " + strings.Join(have, ", ")
}
