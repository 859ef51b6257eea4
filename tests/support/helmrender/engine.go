package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yaml2 "gopkg.in/yaml.v2"
	yaml3 "gopkg.in/yaml.v3"
)

const (
	errStart       = "HELM_ERR_START"
	errEnd         = "HELM_ERR_END"
	recursionLimit = 1000
)

var errWrapped = regexp.MustCompile(errStart + `((?s).*)` + errEnd)

type engine struct {
	ch      *chart
	top     map[string]interface{} // Values, Release, Capabilities, Chart, Files, Subcharts
	lookups []map[string]interface{}
	sources map[string]string // template name -> text
	depth   map[string]int
}

func newEngine(ch *chart, caps *Capabilities, release map[string]interface{}, vals map[string]interface{},
	lookups []map[string]interface{}) *engine {
	e := &engine{ch: ch, lookups: lookups, sources: map[string]string{}, depth: map[string]int{}}
	e.top = map[string]interface{}{
		"Values":       vals,
		"Release":      release,
		"Capabilities": caps,
		"Chart":        chartData{Metadata: ch.meta, IsRoot: true},
		"Files":        newFiles(ch.files),
		"Subcharts":    map[string]interface{}{},
	}
	for _, t := range ch.templates {
		e.sources[path.Join(ch.meta.Name, t.name)] = string(t.data)
	}
	return e
}

func (e *engine) basePath() string { return path.Join(e.ch.meta.Name, "templates") }

// scope is the data of one template: the top-level objects plus .Template.
func (e *engine) scope(name string) map[string]interface{} {
	s := make(map[string]interface{}, len(e.top)+1)
	for k, v := range e.top {
		s[k] = v
	}
	s["Template"] = map[string]interface{}{"Name": name, "BasePath": e.basePath()}
	return s
}

// parseOrder: deeper paths first, and within one depth reverse-lexical (so, as in Helm, a
// `define` in a shallower or alphabetically earlier file is parsed last and wins).
func parseOrder(names []string) []string {
	out := append([]string{}, names...)
	sort.Slice(out, func(i, j int) bool {
		ci, cj := strings.Count(out[i], "/"), strings.Count(out[j], "/")
		if ci != cj {
			return ci > cj
		}
		return out[i] > out[j]
	})
	return out
}

// newSet parses every chart template into one template set with the engine's functions.
func (e *engine) newSet() (*template.Template, error) {
	t := template.New("gotpl").Option("missingkey=zero")
	t.Funcs(e.funcMap(t))
	names := make([]string, 0, len(e.sources))
	for n := range e.sources {
		names = append(names, n)
	}
	for _, n := range parseOrder(names) {
		if _, err := t.New(n).Parse(e.sources[n]); err != nil {
			return nil, parseError(n, err)
		}
	}
	return t, nil
}

func (e *engine) renderAll() (map[string]string, error) {
	t, err := e.newSet()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(e.sources))
	for n := range e.sources {
		names = append(names, n)
	}
	out := map[string]string{}
	for _, n := range parseOrder(names) {
		if strings.HasPrefix(path.Base(n), "_") {
			continue
		}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, n, e.scope(n)); err != nil {
			return nil, execError(n, err)
		}
		out[n] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return out, nil
}

func (e *engine) funcMap(t *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["toYamlPretty"] = toYAMLPretty
	f["fromYaml"] = fromYAML
	f["fromYamlArray"] = fromYAMLArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["fromJsonArray"] = fromJSONArray
	f["toToml"] = func(interface{}) (string, error) { return "", errors.New("toToml is not supported by helmrender") }
	f["fromToml"] = func(string) (map[string]interface{}, error) {
		return nil, errors.New("fromToml is not supported by helmrender")
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		if e.depth[name] > recursionLimit {
			return "", fmt.Errorf("unable to execute template: rendering template has a nested reference name: %s", name)
		}
		e.depth[name]++
		defer func() { e.depth[name]-- }()
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, vals interface{}) (string, error) {
		name := e.basePath() + "/tpl"
		if m, ok := vals.(map[string]interface{}); ok {
			if tm, ok := m["Template"].(map[string]interface{}); ok {
				if n, ok := tm["Name"].(string); ok {
					name = n
				}
			}
		}
		set, err := e.newSet()
		if err != nil {
			return "", err
		}
		// A fresh set, so the tpl text may define templates without clobbering the chart's.
		if _, err := set.New(name).Parse(text); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", text, parseError(name, err))
		}
		var buf strings.Builder
		if err := set.ExecuteTemplate(&buf, name, vals); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(msg string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(errStart + msg + errEnd)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(errStart + msg + errEnd)
		}
		return val, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(errStart + msg + errEnd) }
	f["lookup"] = e.lookup
	return f
}

// lookup returns the --lookup object with that apiVersion, kind, namespace and name, an empty map
// when there is none (what `helm template` always returns), or {items: [...]} when name is "".
func (e *engine) lookup(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
	var items []interface{}
	for _, o := range e.lookups {
		if o["apiVersion"] != apiVersion || o["kind"] != kind {
			continue
		}
		md, _ := o["metadata"].(map[string]interface{})
		ns, _ := md["namespace"].(string)
		n, _ := md["name"].(string)
		if namespace != "" && ns != namespace {
			continue
		}
		if name == "" {
			items = append(items, deepCopy(o))
		} else if n == name {
			return deepCopy(o).(map[string]interface{}), nil
		}
	}
	if name == "" {
		if items == nil {
			return map[string]interface{}{}, nil
		}
		return map[string]interface{}{"apiVersion": "v1", "kind": kind + "List", "items": items}, nil
	}
	return map[string]interface{}{}, nil
}

// parseError and execError shape text/template errors as Helm reports them.
func parseError(name string, err error) error {
	tokens := strings.Split(err.Error(), ": ")
	if len(tokens) == 1 {
		return fmt.Errorf("parse error in (%s): %s", name, err)
	}
	return fmt.Errorf("parse error at (%s): %s", tokens[1], tokens[len(tokens)-1])
}

func execError(name string, err error) error {
	var ee template.ExecError
	if !errors.As(err, &ee) {
		return err
	}
	tokens := strings.SplitN(err.Error(), ": ", 3)
	if len(tokens) != 3 {
		return fmt.Errorf("execution error in (%s): %s", name, err)
	}
	if parts := errWrapped.FindStringSubmatch(tokens[2]); len(parts) >= 2 {
		return fmt.Errorf("execution error at (%s): %s", tokens[1], parts[1])
	}
	return fmt.Errorf("template: %s: %s", tokens[1], tokens[2])
}

// toYAML is sigs.k8s.io/yaml.Marshal: JSON encoding first (so json tags, omitempty and
// MarshalJSON apply), then YAML through yaml.v2 (sorted keys, no list indent).
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml2.Unmarshal(j, &obj); err != nil {
		return ""
	}
	out, err := yaml2.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func toYAMLPretty(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml3.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	v, err := yamlToJSONValue([]byte(s))
	if err != nil {
		m["Error"] = err.Error()
		return m
	}
	switch t := v.(type) {
	case map[string]interface{}:
		return t
	case nil:
		return m
	default:
		m["Error"] = fmt.Sprintf("error unmarshaling JSON: json: cannot unmarshal %T into Go value of type map[string]interface {}", t)
		return m
	}
}

func fromYAMLArray(s string) []interface{} {
	v, err := yamlToJSONValue([]byte(s))
	if err != nil {
		return []interface{}{err.Error()}
	}
	switch t := v.(type) {
	case []interface{}:
		return t
	case nil:
		return []interface{}{}
	default:
		return []interface{}{fmt.Sprintf("error unmarshaling JSON: json: cannot unmarshal %T into Go value of type []interface {}", t)}
	}
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}
