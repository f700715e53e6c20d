package versions

import (
	"fmt"
	"regexp"
	"strconv"
)

// Version is a parsed release version "vMAJOR.MINOR.PATCH[-PRE]".
type Version struct {
	Major, Minor, Patch int
	// Pre is the pre-release suffix without its dash ("rc.1"), empty for a release.
	Pre string
}

var versionPattern = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$`)

// Parse reads "vMAJOR.MINOR.PATCH" with an optional "-PRE" suffix. The leading "v" is
// required, as Kubernetes, kubeadm and KubeKey write versions.
func Parse(s string) (Version, error) {
	m := versionPattern.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("%q is not a version like v1.26.5", s)
	}
	var v Version
	var err error
	for i, p := range []*int{&v.Major, &v.Minor, &v.Patch} {
		if *p, err = strconv.Atoi(m[i+1]); err != nil {
			return Version{}, fmt.Errorf("%q: %w", s, err)
		}
	}
	v.Pre = m[4]
	return v, nil
}

func (v Version) String() string {
	s := fmt.Sprintf("v%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	return s
}

// MinorString is "v1.26" for v1.26.5.
func (v Version) MinorString() string { return fmt.Sprintf("v%d.%d", v.Major, v.Minor) }

// Compare orders versions by major, minor and patch; a pre-release sorts before its release
// and pre-releases compare as strings (enough for the rc.N tags the matrix may hold).
func (v Version) Compare(w Version) int {
	for _, d := range [][2]int{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case v.Pre == w.Pre:
		return 0
	case v.Pre == "":
		return 1
	case w.Pre == "":
		return -1
	case v.Pre < w.Pre:
		return -1
	}
	return 1
}
