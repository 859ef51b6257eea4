// helmrender renders a Helm chart directory the way `helm template` does, offline, for tests.
//
// Helm is not packaged for Debian 12 and cannot be downloaded here, but its template engine is Go
// text/template + Masterminds sprig + a few functions of its own. This program rebuilds that engine
// from Debian's golang-go, golang-github-masterminds-sprig-dev and golang-gopkg-yaml.v{2,3}-dev,
// written from Helm's documented behaviour (helm/helm pkg/engine, pkg/chartutil, pkg/strvals,
// pkg/releaseutil, pkg/action), not from its code.
//
// Build (GOPATH mode, no network):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o helmrender ./tests/support/helmrender
//
// Use:
//
//	helmrender [flags] CHART_DIR
//	  --name NAME             release name (default "release-name", as `helm template`)
//	  -n, --namespace NS      release namespace (default "default")
//	  -f, --values FILE       values file; repeatable, later files win
//	  --set K=V[,K=V]         as helm (typed: true/false/null/integers; lists {a,b}; a[0].b=c)
//	  --set-string K=V        as --set, every value a string
//	  --set-json K=JSON       as --set, the value is JSON
//	  --set-file K=PATH       as --set, the value is the file's content
//	  --kube-version V        .Capabilities.KubeVersion (default v1.31.0)
//	  -a, --api-versions GV   extra .Capabilities.APIVersions; repeatable
//	  --include-crds          emit crds/ first (as `helm template --include-crds`)
//	  --skip-tests            leave out `helm.sh/hook: test` resources
//	  --no-hooks              leave out every hook
//	  --is-upgrade            .Release.IsUpgrade true, .Release.IsInstall false, Revision 2
//	  --skip-schema-validation  do not check values.schema.json
//	  --lookup FILE           YAML stream of objects that `lookup` finds (default: none, like
//	                          `helm template`); name "" returns {items: [...]} as Helm does
//	  --notes-out FILE        write the rendered NOTES.txt there (it is never in the output)
//
// Reproduced from Helm 3:
//   - values: chart values.yaml coalesced under the user's values (-f files merged in order, then
//     --set*, in order); a user `null` deletes a chart default; maps merge recursively. Values are
//     decoded as Helm decodes them (YAML -> JSON, so numbers from files are float64 and YAML 1.1
//     booleans such as `yes` apply; --set integers are int64, other numbers strings).
//   - values.schema.json validated against the coalesced values before rendering (draft-07 subset,
//     see schema.go; an unsupported keyword is an error here, where Helm would ignore it).
//   - Chart.yaml checks (apiVersion v1/v2, name, SemVer version, application type) and the
//     kubeVersion constraint against --kube-version ("chart requires kubeVersion ...").
//   - the function set of pkg/engine/funcs.go: sprig's TxtFuncMap without env/expandenv, plus
//     toYaml (JSON round trip then yaml.v2, sorted keys, as sigs.k8s.io/yaml), toYamlPretty,
//     fromYaml, fromYamlArray, toJson, fromJson, fromJsonArray, include (recursion limit 1000),
//     tpl, required, fail (Helm's error wrapping), lookup.
//   - missingkey=zero and the "<no value>" clean-up; partials (`_*`) parsed, not rendered; template
//     names CHART/templates/PATH; .Template.Name/.BasePath; .Release (Name, Namespace, Revision,
//     IsInstall, IsUpgrade, Service "Helm"); .Chart (Chart.yaml fields, IsRoot); .Capabilities
//     (KubeVersion.Version/Major/Minor/GitVersion, APIVersions.Has, HelmVersion); .Files (Get,
//     GetBytes, Glob, Lines, AsConfig, AsSecrets) over the non-template files minus .helmignore.
//   - output: every NOTES.txt excluded; each file split on `---` documents; empty documents
//     dropped; each document's head parsed (a non-string annotation is an error, as in Helm);
//     hooks (helm.sh/hook) separated from manifests; manifests stably sorted by Helm's
//     InstallOrder (unknown kinds last, alphabetically); printed as "---\n# Source: PATH\n...";
//     CRDs (crds/*.yaml|yml|json, raw, untemplated) first with --include-crds; hooks after.
//
// Not reproduced:
//   - subcharts (charts/, dependencies, import-values, globals) - an error here;
//   - a cluster: lookup only sees --lookup objects; no server-side validation (--validate);
//   - toToml/fromToml (no TOML library in Debian's gocode here) - an error if called;
//   - the exact default Capabilities (Helm's depend on its client-go build: here v1.31.0 and the
//     built-in group/versions below, without the Group/Version/Kind forms);
//   - .helmignore beyond simple globs (no `**`), --show-only, --output-dir, post-renderers,
//     library charts, chart archives (.tgz), strict mode, Helm's exact error wording elsewhere.
package main

import (
	"fmt"
	"os"
	"strings"
)

type options struct {
	chartDir    string
	releaseName string
	namespace   string
	valueFiles  []string
	sets        []setArg
	kubeVersion string
	apiVersions []string
	includeCRDs bool
	skipTests   bool
	noHooks     bool
	isUpgrade   bool
	skipSchema  bool
	lookupFile  string
	notesOut    string
}

type setArg struct {
	kind  string // set, set-string, set-json, set-file
	value string
}

func usage(msg string) {
	if msg != "" {
		fmt.Fprintln(os.Stderr, "helmrender: "+msg)
	}
	fmt.Fprintln(os.Stderr, "usage: helmrender [--name N] [-n NS] [-f FILE]... [--set K=V]... [--kube-version V] [--include-crds] [--skip-tests] CHART_DIR")
	os.Exit(2)
}

func parseArgs(args []string) options {
	o := options{releaseName: "release-name", namespace: "default", kubeVersion: "v1.31.0"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := a, "", false
		if strings.HasPrefix(a, "--") {
			if k, v, ok := strings.Cut(a, "="); ok {
				name, val, hasVal = k, v, true
			}
		}
		next := func() string {
			if hasVal {
				return val
			}
			if i+1 >= len(args) {
				usage(name + " needs a value")
			}
			i++
			return args[i]
		}
		switch name {
		case "--name":
			o.releaseName = next()
		case "-n", "--namespace":
			o.namespace = next()
		case "-f", "--values":
			o.valueFiles = append(o.valueFiles, next())
		case "--set", "--set-string", "--set-json", "--set-file":
			o.sets = append(o.sets, setArg{kind: strings.TrimPrefix(name, "--"), value: next()})
		case "--kube-version":
			o.kubeVersion = next()
		case "-a", "--api-versions":
			o.apiVersions = append(o.apiVersions, strings.Split(next(), ",")...)
		case "--include-crds":
			o.includeCRDs = true
		case "--skip-tests":
			o.skipTests = true
		case "--no-hooks":
			o.noHooks = true
		case "--is-upgrade":
			o.isUpgrade = true
		case "--skip-schema-validation":
			o.skipSchema = true
		case "--lookup":
			o.lookupFile = next()
		case "--notes-out":
			o.notesOut = next()
		case "-h", "--help":
			usage("")
		default:
			if strings.HasPrefix(a, "-") {
				usage("unknown flag " + a)
			}
			if o.chartDir != "" {
				usage("one chart directory only (got " + o.chartDir + " and " + a + ")")
			}
			o.chartDir = a
		}
	}
	if o.chartDir == "" {
		usage("no chart directory")
	}
	return o
}

func main() {
	o := parseArgs(os.Args[1:])
	out, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error: "+err.Error())
		os.Exit(1)
	}
	os.Stdout.WriteString(out)
}

func run(o options) (string, error) {
	ch, err := loadChart(o.chartDir)
	if err != nil {
		return "", err
	}
	caps, err := newCapabilities(o.kubeVersion, o.apiVersions)
	if err != nil {
		return "", err
	}
	if err := checkKubeVersion(ch, caps); err != nil {
		return "", err
	}
	user, err := userValues(o)
	if err != nil {
		return "", err
	}
	vals := coalesce(ch.values, user)
	if !o.skipSchema && ch.schema != nil {
		if errs := validateSchema(ch.schema, vals); len(errs) > 0 {
			return "", fmt.Errorf("values don't meet the specifications of the schema(s) in the following chart(s):\n%s:\n- %s",
				ch.meta.Name, strings.Join(errs, "\n- "))
		}
	}
	var lookups []map[string]interface{}
	if o.lookupFile != "" {
		if lookups, err = loadLookupObjects(o.lookupFile); err != nil {
			return "", err
		}
	}
	revision := 1
	if o.isUpgrade {
		revision = 2
	}
	release := map[string]interface{}{
		"Name":      o.releaseName,
		"Namespace": o.namespace,
		"Revision":  revision,
		"IsInstall": !o.isUpgrade,
		"IsUpgrade": o.isUpgrade,
		"Service":   "Helm",
	}
	eng := newEngine(ch, caps, release, vals, lookups)
	rendered, err := eng.renderAll()
	if err != nil {
		return "", err
	}
	notesName := ch.meta.Name + "/templates/NOTES.txt"
	for name, text := range rendered {
		if strings.HasSuffix(name, "NOTES.txt") {
			if name == notesName && o.notesOut != "" {
				if err := os.WriteFile(o.notesOut, []byte(text), 0o644); err != nil {
					return "", err
				}
			}
			delete(rendered, name)
		}
	}
	return assemble(ch, rendered, o)
}
