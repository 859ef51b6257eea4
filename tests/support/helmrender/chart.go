package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/Masterminds/semver"
	yaml2 "gopkg.in/yaml.v2"
)

// Metadata is Chart.yaml, with the field names templates see as .Chart.X.
type Metadata struct {
	Name         string                   `yaml:"name"`
	Home         string                   `yaml:"home"`
	Sources      []string                 `yaml:"sources"`
	Version      string                   `yaml:"version"`
	Description  string                   `yaml:"description"`
	Keywords     []string                 `yaml:"keywords"`
	Maintainers  []map[string]interface{} `yaml:"maintainers"`
	Icon         string                   `yaml:"icon"`
	APIVersion   string                   `yaml:"apiVersion"`
	Condition    string                   `yaml:"condition"`
	Tags         string                   `yaml:"tags"`
	AppVersion   string                   `yaml:"appVersion"`
	Deprecated   bool                     `yaml:"deprecated"`
	Annotations  map[string]string        `yaml:"annotations"`
	KubeVersion  string                   `yaml:"kubeVersion"`
	Dependencies []map[string]interface{} `yaml:"dependencies"`
	Type         string                   `yaml:"type"`
}

// chartData is what templates see as .Chart: the metadata plus IsRoot (as Helm's engine).
type chartData struct {
	Metadata
	IsRoot bool
}

type chartFile struct {
	name string // relative to the chart root, slash-separated
	data []byte
}

type chart struct {
	dir       string
	meta      Metadata
	values    map[string]interface{}
	schema    map[string]interface{}
	templates []chartFile // templates/**
	files     []chartFile // everything else (what .Files sees), including crds/
}

func loadChart(dir string) (*chart, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: only chart directories are supported (not archives)", dir)
	}
	ign, err := loadHelmignore(filepath.Join(dir, ".helmignore"))
	if err != nil {
		return nil, err
	}
	c := &chart{dir: dir}
	var sawChartYaml bool
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if ign.ignored(rel, info.IsDir()) {
			if info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if info.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case rel == "Chart.yaml":
			sawChartYaml = true
			if err := yaml2.Unmarshal(data, &c.meta); err != nil {
				return fmt.Errorf("cannot load Chart.yaml: %v", err)
			}
		case rel == "values.yaml":
			v, err := decodeValues(data)
			if err != nil {
				return fmt.Errorf("cannot load values.yaml: %v", err)
			}
			c.values = v
		case rel == "values.schema.json":
			var s map[string]interface{}
			if err := json.Unmarshal(data, &s); err != nil {
				return fmt.Errorf("cannot load values.schema.json: %v", err)
			}
			c.schema = s
		case rel == "Chart.lock" || rel == "requirements.yaml" || rel == "requirements.lock" || rel == ".helmignore":
		case strings.HasPrefix(rel, "charts/"):
			return fmt.Errorf("%s: subcharts are not supported by helmrender", rel)
		case strings.HasPrefix(rel, "templates/"):
			// Helm always ignores hidden files under templates/.
			if strings.HasPrefix(path.Base(rel), ".") {
				return nil
			}
			c.templates = append(c.templates, chartFile{rel, data})
		default:
			c.files = append(c.files, chartFile{rel, data})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawChartYaml {
		return nil, fmt.Errorf("%s: Chart.yaml file is missing", dir)
	}
	if c.values == nil {
		c.values = map[string]interface{}{}
	}
	m := c.meta
	switch {
	case m.APIVersion == "":
		return nil, fmt.Errorf("validation: chart.metadata.apiVersion is required")
	case m.APIVersion != "v1" && m.APIVersion != "v2":
		return nil, fmt.Errorf("validation: chart.metadata.apiVersion %q is invalid", m.APIVersion)
	case m.Name == "":
		return nil, fmt.Errorf("validation: chart.metadata.name is required")
	case m.Version == "":
		return nil, fmt.Errorf("validation: chart.metadata.version is required")
	case m.Type != "" && m.Type != "application":
		return nil, fmt.Errorf("%s charts are not installable", m.Type)
	}
	if _, err := semver.StrictNewVersion(m.Version); err != nil {
		return nil, fmt.Errorf("validation: chart.metadata.version %q is invalid", m.Version)
	}
	return c, nil
}

// crds are the raw files under crds/ with a manifest extension, in file order.
func (c *chart) crds() []chartFile {
	var out []chartFile
	for _, f := range c.files {
		ext := strings.ToLower(path.Ext(f.name))
		if strings.HasPrefix(f.name, "crds/") && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
			out = append(out, f)
		}
	}
	return out
}

// .helmignore: one glob per line, `#` comments, a trailing `/` matches directories only, a leading
// `/` anchors at the chart root, `!` negates; a pattern without `/` matches the base name.
type ignoreRule struct {
	pattern string
	dirOnly bool
	negate  bool
	anchor  bool
}

type ignoreRules []ignoreRule

func loadHelmignore(p string) (ignoreRules, error) {
	f, err := os.Open(p)
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	var rules ignoreRules
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{}
		if strings.HasPrefix(line, "!") {
			r.negate, line = true, line[1:]
		}
		if strings.HasSuffix(line, "/") {
			r.dirOnly, line = true, strings.TrimSuffix(line, "/")
		}
		if strings.HasPrefix(line, "/") {
			r.anchor, line = true, strings.TrimPrefix(line, "/")
		}
		if strings.Contains(line, "**") {
			return nil, fmt.Errorf(".helmignore: %q: ** is not supported", line)
		}
		if _, err := path.Match(line, ""); err != nil {
			return nil, fmt.Errorf(".helmignore: %q: %v", line, err)
		}
		r.pattern = line
		rules = append(rules, r)
	}
	return rules, sc.Err()
}

func (rs ignoreRules) ignored(rel string, isDir bool) bool {
	ignored := false
	for _, r := range rs {
		if r.dirOnly && !isDir {
			continue
		}
		var ok bool
		if r.anchor || strings.Contains(r.pattern, "/") {
			ok, _ = path.Match(r.pattern, rel)
		} else {
			ok, _ = path.Match(r.pattern, path.Base(rel))
		}
		if ok {
			ignored = !r.negate
		}
	}
	return ignored
}

// Files is .Files: the chart's non-template files.
type Files map[string][]byte

func newFiles(fs []chartFile) Files {
	out := Files{}
	for _, f := range fs {
		out[f.name] = f.data
	}
	return out
}

func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Get(name string) string      { return string(f[name]) }

// Glob matches with path.Match, plus `**` for any run of path segments.
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if globMatch(pattern, name) {
			out[name] = data
		}
	}
	return out
}

func globMatch(pattern, name string) bool {
	if !strings.Contains(pattern, "**") {
		ok, _ := path.Match(pattern, name)
		return ok
	}
	// Translate to segments; ** matches zero or more segments.
	ps, ns := strings.Split(pattern, "/"), strings.Split(name, "/")
	var match func(i, j int) bool
	match = func(i, j int) bool {
		if i == len(ps) {
			return j == len(ns)
		}
		if ps[i] == "**" {
			for k := j; k <= len(ns); k++ {
				if match(i+1, k) {
					return true
				}
			}
			return false
		}
		if j == len(ns) {
			return false
		}
		ok, _ := path.Match(ps[i], ns[j])
		return ok && match(i+1, j+1)
	}
	return match(0, 0)
}

func (f Files) sortedNames() []string {
	names := make([]string, 0, len(f))
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (f Files) AsConfig() string {
	m := map[string]string{}
	for _, n := range f.sortedNames() {
		m[path.Base(n)] = string(f[n])
	}
	return toYAML(m)
}

func (f Files) AsSecrets() string {
	m := map[string]string{}
	for _, n := range f.sortedNames() {
		m[path.Base(n)] = base64.StdEncoding.EncodeToString(f[n])
	}
	return toYAML(m)
}

func (f Files) Lines(name string) []string {
	if f[name] == nil {
		return []string{}
	}
	return strings.Split(string(f[name]), "\n")
}

// Capabilities is .Capabilities.
type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (kv *KubeVersion) String() string     { return kv.Version }
func (kv *KubeVersion) GitVersion() string { return kv.Version }

type VersionSet []string

func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type HelmVersion struct {
	Version      string
	GitCommit    string
	GitTreeState string
	GoVersion    string
}

type Capabilities struct {
	APIVersions VersionSet
	KubeVersion KubeVersion
	HelmVersion HelmVersion
}

// The built-in group/versions of a Kubernetes >= 1.25 API server.
var defaultAPIVersions = []string{
	"v1", "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1", "apiregistration.k8s.io/v1",
	"apps/v1", "authentication.k8s.io/v1", "authorization.k8s.io/v1", "autoscaling/v1", "autoscaling/v2",
	"batch/v1", "certificates.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
	"events.k8s.io/v1", "flowcontrol.apiserver.k8s.io/v1", "networking.k8s.io/v1", "node.k8s.io/v1",
	"policy/v1", "rbac.authorization.k8s.io/v1", "scheduling.k8s.io/v1", "storage.k8s.io/v1",
}

func newCapabilities(kubeVersion string, extra []string) (*Capabilities, error) {
	v, err := semver.NewVersion(kubeVersion)
	if err != nil {
		return nil, fmt.Errorf("invalid --kube-version %q: %v", kubeVersion, err)
	}
	apis := append(VersionSet{}, defaultAPIVersions...)
	for _, a := range extra {
		if a = strings.TrimSpace(a); a != "" {
			apis = append(apis, a)
		}
	}
	return &Capabilities{
		APIVersions: apis,
		KubeVersion: KubeVersion{
			Version: "v" + v.String(),
			Major:   fmt.Sprint(v.Major()),
			Minor:   fmt.Sprint(v.Minor()),
		},
		HelmVersion: HelmVersion{Version: "v3.16.0+helmrender", GoVersion: "go1.19"},
	}, nil
}

func checkKubeVersion(c *chart, caps *Capabilities) error {
	if c.meta.KubeVersion == "" {
		return nil
	}
	cons, err := semver.NewConstraint(c.meta.KubeVersion)
	if err != nil {
		return fmt.Errorf("invalid kubeVersion %q in Chart.yaml: %v", c.meta.KubeVersion, err)
	}
	v, err := semver.NewVersion(caps.KubeVersion.Version)
	if err != nil {
		return err
	}
	if !cons.Check(v) {
		return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s",
			c.meta.KubeVersion, caps.KubeVersion.Version)
	}
	return nil
}
