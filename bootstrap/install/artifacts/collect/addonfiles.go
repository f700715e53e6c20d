package collect

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/kubesphere"
	"github.com/ksboot/ksboot/internal/atomicfile"
)

// addonManifestsDir holds third-party manifests, where addons.DirSource reads them.
const addonManifestsDir = "manifests"

func (c *collector) calicoArtifact() addons.Artifact {
	if c.o.CalicoManifest != nil {
		return *c.o.CalicoManifest
	}
	return addons.CalicoManifest
}

// calicoManifest downloads Calico's manifest (from spec.artifacts.mirror as the addons step
// does, or upstream) and checks it against the digest ksboot pins; a file already there with
// that digest is kept. Its images are read from it later.
func (c *collector) calicoManifest(ctx context.Context) ([]artifacts.Entry, string, error) {
	a := c.calicoArtifact()
	rel := path.Join(addonManifestsDir, a.Name)
	dst := filepath.Join(c.dir, filepath.FromSlash(rel))
	e := artifacts.Entry{Name: "calico", Version: addons.CalicoVersion, Kind: artifacts.KindManifest, Path: rel, SHA256: strings.ToLower(a.SHA256)}
	if sum, err := artifacts.FileSHA256(dst); err == nil && sum == e.SHA256 {
		return []artifacts.Entry{e}, "already downloaded", nil
	}
	src := addons.HTTPSource{Mirror: c.c.Spec.Artifacts.Mirror, Client: c.o.HTTPClient}
	data, err := addons.Load(ctx, src, a)
	if err != nil {
		return nil, "", fmt.Errorf("downloading the Calico manifest: %w", err)
	}
	if err := atomicfile.Write(dst, data, 0o644, 0o755); err != nil {
		return nil, "", err
	}
	return []artifacts.Entry{e}, "downloaded from " + src.Describe(a), nil
}

// chartStep plans the download of KubeSphere v4's ks-core chart from the source the kubesphere
// step would use (spec.kubesphere.chart, or the chart ksboot knows for the version), into
// charts/<file name of the URL>, where that step finds it in a mounted bundle.
func (c *collector) chartStep() (*step, error) {
	if !c.c.Spec.KubeSphere.Enabled {
		return nil, nil
	}
	p, err := kubesphere.ParamsFromCluster(c.c, "")
	if err != nil {
		return nil, err
	}
	if p.Major != 4 {
		return nil, nil
	}
	if !strings.HasPrefix(p.Chart, "http://") && !strings.HasPrefix(p.Chart, "https://") {
		return nil, fmt.Errorf("spec.kubesphere.chart %q is a path in the offline bundle, and ksboot bundle downloads the chart only from an http(s) URL: "+
			"set spec.kubesphere.chart to the chart's URL (or leave it empty for a KubeSphere version ksboot knows), "+
			"or put the chart at that path in a bundle directory and pack it with --from-dir", p.Chart)
	}
	rel, err := kubesphere.BundleChartPath(p.Chart)
	if err != nil {
		return nil, err
	}
	c.chartPath = rel
	return &step{what: "ks-core chart for KubeSphere " + p.Version, run: func(ctx context.Context) ([]artifacts.Entry, string, error) {
		dst := filepath.Join(c.dir, filepath.FromSlash(rel))
		// A chart source publishes no checksum: a chart is kept when an earlier run recorded
		// it and the file still has the recorded sha256.
		if prev, ok := c.state.find(rel); ok && prev.Kind == artifacts.KindChart {
			if sum, err := artifacts.FileSHA256(dst); err == nil && sum == prev.SHA256 {
				return []artifacts.Entry{prev}, "already downloaded", nil
			}
		}
		data, ch, err := kubesphere.FetchChart(ctx, p.Chart, c.o.HTTPClient)
		if err != nil {
			return nil, "", err
		}
		if err := atomicfile.Write(dst, data, 0o644, 0o755); err != nil {
			return nil, "", err
		}
		sum, err := artifacts.FileSHA256(dst)
		if err != nil {
			return nil, "", err
		}
		e := artifacts.Entry{Name: ch.Name(), Version: ch.Metadata.Version, Kind: artifacts.KindChart, Path: rel, SHA256: sum}
		return []artifacts.Entry{e}, "downloaded from " + p.Chart, nil
	}}, nil
}
