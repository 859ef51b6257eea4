package main

// A JSON Schema (draft-07) validator for values.schema.json, as Helm checks it before rendering.
//
// Supported: type (incl. lists of types), enum, const, properties, patternProperties,
// additionalProperties (bool or schema), required, propertyNames, minProperties, maxProperties,
// items (schema or tuple), additionalItems, minItems, maxItems, uniqueItems, contains, minimum,
// maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, minLength, maxLength, pattern, allOf,
// anyOf, oneOf, not, if/then/else, $ref to "#/..." JSON pointers, definitions/$defs; annotations
// ($schema, $id, $comment, title, description, default, examples, readOnly, writeOnly,
// deprecated, format) are accepted and not checked. Any other keyword is an error, so a schema
// never silently checks less than its author believes.

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

var schemaAnnotations = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "title": true, "description": true, "default": true,
	"examples": true, "readOnly": true, "writeOnly": true, "deprecated": true, "format": true,
	"definitions": true, "$defs": true, "then": true, "else": true,
}

var schemaKeywords = map[string]bool{
	"type": true, "enum": true, "const": true, "properties": true, "patternProperties": true,
	"additionalProperties": true, "required": true, "propertyNames": true, "minProperties": true,
	"maxProperties": true, "items": true, "additionalItems": true, "minItems": true, "maxItems": true,
	"uniqueItems": true, "contains": true, "minimum": true, "maximum": true, "exclusiveMinimum": true,
	"exclusiveMaximum": true, "multipleOf": true, "minLength": true, "maxLength": true, "pattern": true,
	"allOf": true, "anyOf": true, "oneOf": true, "not": true, "if": true, "$ref": true,
}

type schemaValidator struct {
	root  map[string]interface{}
	res   map[string]*regexp.Regexp
	errs  []string
	fatal error
}

// validateSchema returns one message per violation ("at '/a/b': ..."), sorted.
func validateSchema(schema map[string]interface{}, values interface{}) []string {
	// Validate what the values look like as JSON (int64 from --set and float64 from files alike).
	j, err := json.Marshal(values)
	if err != nil {
		return []string{err.Error()}
	}
	var doc interface{}
	dec := json.NewDecoder(strings.NewReader(string(j)))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return []string{err.Error()}
	}
	v := &schemaValidator{root: schema, res: map[string]*regexp.Regexp{}}
	v.errs = v.check(schema, doc, "")
	if v.fatal != nil {
		return []string{"values.schema.json: " + v.fatal.Error()}
	}
	sort.Strings(v.errs)
	return v.errs
}

func at(p string) string {
	if p == "" {
		return "at '/'"
	}
	return "at '" + p + "'"
}

func jsonType(x interface{}) string {
	switch t := x.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if isInteger(t) {
			return "integer"
		}
		return "number"
	case []interface{}:
		return "array"
	case map[string]interface{}:
		return "object"
	}
	return fmt.Sprintf("%T", x)
}

func isInteger(n json.Number) bool {
	f, err := n.Float64()
	return err == nil && f == math.Trunc(f) && !math.IsInf(f, 0)
}

func num(x interface{}) (float64, bool) {
	switch t := x.(type) {
	case json.Number:
		f, err := t.Float64()
		return f, err == nil
	case float64:
		return t, true
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	}
	return 0, false
}

func (v *schemaValidator) re(p string) *regexp.Regexp {
	if r, ok := v.res[p]; ok {
		return r
	}
	r, err := regexp.Compile(p)
	if err != nil {
		v.fatal = fmt.Errorf("pattern %q: %v", p, err)
		r = regexp.MustCompile("")
	}
	v.res[p] = r
	return r
}

func (v *schemaValidator) resolve(ref string) (map[string]interface{}, bool) {
	if !strings.HasPrefix(ref, "#") {
		v.fatal = fmt.Errorf("$ref %q: only local references (#/...) are supported", ref)
		return nil, false
	}
	var cur interface{} = v.root
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]interface{})
		if !ok {
			v.fatal = fmt.Errorf("$ref %q does not resolve", ref)
			return nil, false
		}
		cur = m[tok]
	}
	m, ok := cur.(map[string]interface{})
	if !ok {
		v.fatal = fmt.Errorf("$ref %q does not resolve to a schema", ref)
	}
	return m, ok
}

func jsonEqual(a, b interface{}) bool {
	na, aok := num(a)
	nb, bok := num(b)
	if aok && bok {
		return na == nb
	}
	switch at := a.(type) {
	case []interface{}:
		bt, ok := b.([]interface{})
		if !ok || len(at) != len(bt) {
			return false
		}
		for i := range at {
			if !jsonEqual(at[i], bt[i]) {
				return false
			}
		}
		return true
	case map[string]interface{}:
		bt, ok := b.(map[string]interface{})
		if !ok || len(at) != len(bt) {
			return false
		}
		for k := range at {
			if !jsonEqual(at[k], bt[k]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func short(x interface{}) string {
	b, _ := json.Marshal(x)
	s := string(b)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// check validates x against schema s (a map or a boolean) at JSON pointer p.
func (v *schemaValidator) check(s interface{}, x interface{}, p string) []string {
	if v.fatal != nil {
		return nil
	}
	switch b := s.(type) {
	case bool:
		if b {
			return nil
		}
		return []string{at(p) + ": not allowed"}
	case map[string]interface{}:
	default:
		v.fatal = fmt.Errorf("%s: a schema must be an object or a boolean", at(p))
		return nil
	}
	sm := s.(map[string]interface{})
	var errs []string
	add := func(format string, args ...interface{}) { errs = append(errs, at(p)+": "+fmt.Sprintf(format, args...)) }
	for k := range sm {
		if !schemaKeywords[k] && !schemaAnnotations[k] {
			v.fatal = fmt.Errorf("%s: unsupported keyword %q", at(p), k)
			return nil
		}
	}
	if ref, ok := sm["$ref"].(string); ok {
		target, ok := v.resolve(ref)
		if !ok {
			return nil
		}
		errs = append(errs, v.check(target, x, p)...)
	}
	if t, ok := sm["type"]; ok {
		var types []string
		switch tt := t.(type) {
		case string:
			types = []string{tt}
		case []interface{}:
			for _, e := range tt {
				types = append(types, fmt.Sprint(e))
			}
		}
		got := jsonType(x)
		ok := false
		for _, want := range types {
			if want == got || (want == "number" && got == "integer") {
				ok = true
			}
		}
		if !ok {
			add("got %s, want %s", got, strings.Join(types, " or "))
			return errs // the other keywords would only repeat this
		}
	}
	if e, ok := sm["enum"].([]interface{}); ok {
		found := false
		for _, want := range e {
			if jsonEqual(x, want) {
				found = true
			}
		}
		if !found {
			var opts []string
			for _, want := range e {
				opts = append(opts, short(want))
			}
			add("value must be one of %s (got %s)", strings.Join(opts, ", "), short(x))
		}
	}
	if c, ok := sm["const"]; ok && !jsonEqual(x, c) {
		add("value must be %s", short(c))
	}
	switch t := x.(type) {
	case map[string]interface{}:
		errs = append(errs, v.checkObject(sm, t, p)...)
	case []interface{}:
		errs = append(errs, v.checkArray(sm, t, p)...)
	case string:
		n := utf8.RuneCountInString(t)
		if m, ok := num(sm["minLength"]); ok && float64(n) < m {
			add("length must be >= %v, but got %d", m, n)
		}
		if m, ok := num(sm["maxLength"]); ok && float64(n) > m {
			add("length must be <= %v, but got %d", m, n)
		}
		if pat, ok := sm["pattern"].(string); ok && !v.re(pat).MatchString(t) {
			add("%q does not match pattern %q", t, pat)
		}
	case json.Number:
		f, _ := t.Float64()
		if m, ok := num(sm["minimum"]); ok && f < m {
			add("must be >= %v but found %v", m, t)
		}
		if m, ok := num(sm["maximum"]); ok && f > m {
			add("must be <= %v but found %v", m, t)
		}
		if m, ok := num(sm["exclusiveMinimum"]); ok && f <= m {
			add("must be > %v but found %v", m, t)
		}
		if m, ok := num(sm["exclusiveMaximum"]); ok && f >= m {
			add("must be < %v but found %v", m, t)
		}
		if m, ok := num(sm["multipleOf"]); ok && m > 0 && math.Abs(math.Remainder(f, m)) > 1e-9 {
			add("%v is not a multiple of %v", t, m)
		}
	}
	if all, ok := sm["allOf"].([]interface{}); ok {
		for _, sub := range all {
			errs = append(errs, v.check(sub, x, p)...)
		}
	}
	if anyOf, ok := sm["anyOf"].([]interface{}); ok {
		matched := false
		for _, sub := range anyOf {
			if len(v.check(sub, x, p)) == 0 {
				matched = true
				break
			}
		}
		if !matched {
			add("%s matches none of the anyOf schemas", short(x))
		}
	}
	if oneOf, ok := sm["oneOf"].([]interface{}); ok {
		n := 0
		var sub0 []string
		for i, sub := range oneOf {
			e := v.check(sub, x, p)
			if len(e) == 0 {
				n++
			} else if i == 0 || sub0 == nil {
				sub0 = e
			}
		}
		if n != 1 {
			add("%s must match exactly one oneOf schema, matches %d", short(x), n)
		}
	}
	if not, ok := sm["not"]; ok && len(v.check(not, x, p)) == 0 {
		add("%s must not match the schema in not", short(x))
	}
	if cond, ok := sm["if"]; ok {
		if len(v.check(cond, x, p)) == 0 {
			if then, ok := sm["then"]; ok {
				errs = append(errs, v.check(then, x, p)...)
			}
		} else if els, ok := sm["else"]; ok {
			errs = append(errs, v.check(els, x, p)...)
		}
	}
	return errs
}

func (v *schemaValidator) checkObject(sm map[string]interface{}, obj map[string]interface{}, p string) []string {
	var errs []string
	add := func(format string, args ...interface{}) { errs = append(errs, at(p)+": "+fmt.Sprintf(format, args...)) }
	if req, ok := sm["required"].([]interface{}); ok {
		var missing []string
		for _, r := range req {
			if _, ok := obj[fmt.Sprint(r)]; !ok {
				missing = append(missing, fmt.Sprint(r))
			}
		}
		if len(missing) > 0 {
			add("missing properties: %s", strings.Join(missing, ", "))
		}
	}
	if m, ok := num(sm["minProperties"]); ok && float64(len(obj)) < m {
		add("must have at least %v properties", m)
	}
	if m, ok := num(sm["maxProperties"]); ok && float64(len(obj)) > m {
		add("must have at most %v properties", m)
	}
	props, _ := sm["properties"].(map[string]interface{})
	patProps, _ := sm["patternProperties"].(map[string]interface{})
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var extra []string
	for _, k := range keys {
		child := p + "/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
		matched := false
		if ps, ok := props[k]; ok {
			matched = true
			errs = append(errs, v.check(ps, obj[k], child)...)
		}
		for pat, ps := range patProps {
			if v.re(pat).MatchString(k) {
				matched = true
				errs = append(errs, v.check(ps, obj[k], child)...)
			}
		}
		if pn, ok := sm["propertyNames"]; ok {
			errs = append(errs, v.check(pn, k, child)...)
		}
		if !matched {
			if ap, ok := sm["additionalProperties"]; ok {
				if b, isBool := ap.(bool); isBool && !b {
					extra = append(extra, k)
				} else {
					errs = append(errs, v.check(ap, obj[k], child)...)
				}
			}
		}
	}
	if len(extra) > 0 {
		add("additional properties %s not allowed", "'"+strings.Join(extra, "', '")+"'")
	}
	return errs
}

func (v *schemaValidator) checkArray(sm map[string]interface{}, arr []interface{}, p string) []string {
	var errs []string
	add := func(format string, args ...interface{}) { errs = append(errs, at(p)+": "+fmt.Sprintf(format, args...)) }
	if m, ok := num(sm["minItems"]); ok && float64(len(arr)) < m {
		add("minimum %v items required, but found %d items", m, len(arr))
	}
	if m, ok := num(sm["maxItems"]); ok && float64(len(arr)) > m {
		add("maximum %v items allowed, but found %d items", m, len(arr))
	}
	if u, ok := sm["uniqueItems"].(bool); ok && u {
		for i := range arr {
			for j := i + 1; j < len(arr); j++ {
				if jsonEqual(arr[i], arr[j]) {
					add("items at %d and %d are equal", i, j)
				}
			}
		}
	}
	switch items := sm["items"].(type) {
	case []interface{}:
		for i, x := range arr {
			child := fmt.Sprintf("%s/%d", p, i)
			if i < len(items) {
				errs = append(errs, v.check(items[i], x, child)...)
			} else if ai, ok := sm["additionalItems"]; ok {
				errs = append(errs, v.check(ai, x, child)...)
			}
		}
	case nil:
	default:
		for i, x := range arr {
			errs = append(errs, v.check(items, x, fmt.Sprintf("%s/%d", p, i))...)
		}
	}
	if c, ok := sm["contains"]; ok {
		found := false
		for _, x := range arr {
			if len(v.check(c, x, p)) == 0 {
				found = true
			}
		}
		if !found {
			add("no item matches the contains schema")
		}
	}
	return errs
}
