package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	yaml2 "gopkg.in/yaml.v2"
)

// jsonify turns what yaml.v2 decodes into what a JSON decoder would have produced (as
// sigs.k8s.io/yaml does: YAML -> JSON -> Go): string keys, float64 numbers.
func jsonify(v interface{}) (interface{}, error) {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			var ks string
			switch kk := k.(type) {
			case string:
				ks = kk
			case int, int64, uint64, float64, bool:
				ks = fmt.Sprint(kk)
			case nil:
				ks = "null"
			default:
				return nil, fmt.Errorf("unsupported map key %v (%T)", k, k)
			}
			jv, err := jsonify(val)
			if err != nil {
				return nil, err
			}
			m[ks] = jv
		}
		return m, nil
	case map[string]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			jv, err := jsonify(val)
			if err != nil {
				return nil, err
			}
			m[k] = jv
		}
		return m, nil
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, val := range t {
			jv, err := jsonify(val)
			if err != nil {
				return nil, err
			}
			out[i] = jv
		}
		return out, nil
	case int:
		return float64(t), nil
	case int64:
		return float64(t), nil
	case uint64:
		return float64(t), nil
	case float32:
		return float64(t), nil
	case time.Time:
		return t.Format(time.RFC3339Nano), nil
	default:
		return t, nil
	}
}

// yamlToJSONValue decodes one YAML document the way Helm decodes values and fromYaml input.
func yamlToJSONValue(data []byte) (interface{}, error) {
	var raw interface{}
	if err := yaml2.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	return jsonify(raw)
}

func decodeValues(data []byte) (map[string]interface{}, error) {
	v, err := yamlToJSONValue(data)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("values must be a mapping, not %T", v)
	}
	return m, nil
}

// userValues merges -f files in order, then applies every --set* in order (as helm's values.Options).
func userValues(o options) (map[string]interface{}, error) {
	base := map[string]interface{}{}
	for _, f := range o.valueFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		m, err := decodeValues(data)
		if err != nil {
			return nil, fmt.Errorf("failed to parse %s: %v", f, err)
		}
		base = mergeMaps(base, m)
	}
	for _, s := range o.sets {
		if err := parseSet(s, base); err != nil {
			return nil, fmt.Errorf("failed parsing --%s data: %v", s.kind, err)
		}
	}
	return base, nil
}

func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]interface{}); ok {
			if bv, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(bv, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func deepCopy(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, x := range t {
			m[k] = deepCopy(x)
		}
		return m
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, x := range t {
			out[i] = deepCopy(x)
		}
		return out
	default:
		return v
	}
}

// coalesce puts the chart's defaults under the user's values: the user wins, maps merge, and a
// user null removes the default.
func coalesce(defaults, user map[string]interface{}) map[string]interface{} {
	dst := deepCopy(user).(map[string]interface{})
	coalesceInto(dst, deepCopy(defaults).(map[string]interface{}), "")
	return dst
}

func coalesceInto(dst, src map[string]interface{}, prefix string) {
	for key, sv := range src {
		full := key
		if prefix != "" {
			full = prefix + "." + key
		}
		dv, present := dst[key]
		switch {
		case !present:
			dst[key] = sv
		case dv == nil:
			delete(dst, key)
		default:
			dm, dIsMap := dv.(map[string]interface{})
			sm, sIsMap := sv.(map[string]interface{})
			if dIsMap && sIsMap {
				coalesceInto(dm, sm, full)
			} else if dIsMap && sv != nil {
				fmt.Fprintf(os.Stderr, "warning: skipped value for %s: Not a table.\n", full)
			} else if sIsMap {
				fmt.Fprintf(os.Stderr, "warning: cannot overwrite table with non table for %s (%v)\n", full, sv)
			}
		}
	}
}

// --set parsing (the behaviour of helm's pkg/strvals).

type setParser struct {
	s    []rune
	pos  int
	kind string
}

func parseSet(a setArg, into map[string]interface{}) error {
	p := &setParser{s: []rune(a.value), kind: a.kind}
	for p.pos < len(p.s) {
		if err := p.assignment(into); err != nil {
			return err
		}
	}
	return nil
}

type keyStep struct {
	name  string
	index int // -1: a map key
}

// readKey reads a dotted key with [N] indexes up to '='.
func (p *setParser) readKey() ([]keyStep, error) {
	var steps []keyStep
	var cur []rune
	haveName := false
	flush := func() {
		if haveName || len(cur) > 0 {
			steps = append(steps, keyStep{name: string(cur), index: -1})
		}
		cur, haveName = nil, false
	}
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch c {
		case '\\':
			if p.pos+1 < len(p.s) {
				cur = append(cur, p.s[p.pos+1])
				p.pos += 2
				haveName = true
				continue
			}
			p.pos++
		case '=':
			p.pos++
			flush()
			if len(steps) == 0 {
				return nil, fmt.Errorf("key map %q has no key", string(p.s))
			}
			return steps, nil
		case ',':
			return nil, fmt.Errorf("key %q has no value (cannot end with ,)", string(cur))
		case '.':
			p.pos++
			flush()
		case '[':
			p.pos++
			flush()
			end := p.pos
			for end < len(p.s) && p.s[end] != ']' {
				end++
			}
			if end == len(p.s) {
				return nil, fmt.Errorf("key %q has an unterminated index", string(p.s))
			}
			n, err := strconv.Atoi(string(p.s[p.pos:end]))
			if err != nil || n < 0 {
				return nil, fmt.Errorf("negative or invalid index %q", string(p.s[p.pos:end]))
			}
			if n > 65536 {
				return nil, fmt.Errorf("index of %d is greater than maximum supported index 65536", n)
			}
			steps = append(steps, keyStep{index: n})
			p.pos = end + 1
		default:
			cur = append(cur, c)
			haveName = true
			p.pos++
		}
	}
	flush()
	name := ""
	if len(steps) > 0 {
		name = steps[len(steps)-1].name
	}
	return nil, fmt.Errorf("key %q has no value", name)
}

// readValue reads up to an unescaped ',' (or a {a,b} list).
func (p *setParser) readValue() (interface{}, error) {
	switch p.kind {
	case "set-json":
		dec := json.NewDecoder(strings.NewReader(string(p.s[p.pos:])))
		var v interface{}
		if err := dec.Decode(&v); err != nil && err != io.EOF {
			return nil, err
		}
		consumed := len([]rune(string([]byte(string(p.s[p.pos:]))[:dec.InputOffset()])))
		p.pos += consumed
		if p.pos < len(p.s) {
			if p.s[p.pos] != ',' {
				return nil, fmt.Errorf("unexpected data after JSON value: %q", string(p.s[p.pos:]))
			}
			p.pos++
		}
		return v, nil
	}
	if p.pos < len(p.s) && p.s[p.pos] == '{' && p.kind != "set-file" {
		p.pos++
		var list []interface{}
		for {
			v, term, err := p.scalar("},")
			if err != nil {
				return nil, err
			}
			if term == 0 {
				return nil, fmt.Errorf("list must terminate with '}'")
			}
			list = append(list, v)
			if term == '}' {
				break
			}
		}
		if p.pos < len(p.s) {
			if p.s[p.pos] != ',' {
				return nil, fmt.Errorf("unexpected %q after a list", string(p.s[p.pos]))
			}
			p.pos++
		}
		if list == nil {
			list = []interface{}{}
		}
		return list, nil
	}
	v, _, err := p.scalar(",")
	return v, err
}

// scalar reads runes up to one of stops (consumed; returned as term, 0 at the end).
func (p *setParser) scalar(stops string) (interface{}, rune, error) {
	var buf []rune
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c == '\\' && p.pos+1 < len(p.s) {
			buf = append(buf, p.s[p.pos+1])
			p.pos += 2
			continue
		}
		if strings.ContainsRune(stops, c) {
			p.pos++
			v, err := p.typed(string(buf))
			return v, c, err
		}
		buf = append(buf, c)
		p.pos++
	}
	v, err := p.typed(string(buf))
	return v, 0, err
}

func (p *setParser) typed(val string) (interface{}, error) {
	switch p.kind {
	case "set-string":
		return val, nil
	case "set-file":
		data, err := os.ReadFile(val)
		if err != nil {
			return nil, err
		}
		return string(data), nil
	}
	switch {
	case strings.EqualFold(val, "true"):
		return true, nil
	case strings.EqualFold(val, "false"):
		return false, nil
	case strings.EqualFold(val, "null"):
		return nil, nil
	case val == "0":
		return int64(0), nil
	}
	if len(val) > 0 && val[0] != '0' {
		if iv, err := strconv.ParseInt(val, 10, 64); err == nil {
			return iv, nil
		}
	}
	return val, nil
}

func (p *setParser) assignment(into map[string]interface{}) error {
	steps, err := p.readKey()
	if err != nil {
		return err
	}
	val, err := p.readValue()
	if err != nil {
		return err
	}
	var root interface{} = into
	setPath(&root, steps, val)
	return nil
}

// setPath stores val at steps below *cur, creating maps and lists as needed.
func setPath(cur *interface{}, steps []keyStep, val interface{}) {
	st := steps[0]
	last := len(steps) == 1
	if st.index < 0 {
		m, ok := (*cur).(map[string]interface{})
		if !ok {
			m = map[string]interface{}{}
			*cur = m
		}
		if last {
			m[st.name] = val
			return
		}
		child := m[st.name]
		setPath(&child, steps[1:], val)
		m[st.name] = child
		return
	}
	list, _ := (*cur).([]interface{})
	for len(list) <= st.index {
		list = append(list, nil)
	}
	if last {
		list[st.index] = val
	} else {
		child := list[st.index]
		setPath(&child, steps[1:], val)
		list[st.index] = child
	}
	*cur = list
}

// loadLookupObjects reads the objects `lookup` may return (a YAML stream, `---` separated, or a
// v1 List).
func loadLookupObjects(path string) ([]map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []map[string]interface{}
	dec := yaml2.NewDecoder(bytes.NewReader(data))
	for {
		var raw interface{}
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		v, err := jsonify(raw)
		if err != nil {
			return nil, err
		}
		m, ok := v.(map[string]interface{})
		if !ok {
			continue
		}
		if items, ok := m["items"].([]interface{}); ok && strings.HasSuffix(fmt.Sprint(m["kind"]), "List") {
			for _, it := range items {
				if im, ok := it.(map[string]interface{}); ok {
					out = append(out, im)
				}
			}
			continue
		}
		out = append(out, m)
	}
	return out, nil
}
