"""A small OpenAPI v3 validator for CustomResourceDefinition schemas, as the API server applies them.

It checks what sigil's CRDs use: type, required, enum, properties (an unknown field is an error,
as with kubectl's strict field validation), items, minItems/maxItems, minLength/maxLength, pattern,
minimum, format (byte, date-time, int64), x-kubernetes-preserve-unknown-fields, default (applied
before validation, as the API server does), and x-kubernetes-validations whose CEL rules stay
within a small subset (has(), !, &&, ||, ==, !=, +, ?:, integer and boolean literals, self.field).
A rule outside that subset raises UnsupportedRule, so a CRD can't gain a rule these tests skip.

    python3 tests/deploy/crdschema.py deploy/helm/sigil/crds FILE.yaml...   # validate objects
"""

import base64
import binascii
import copy
import datetime
import os
import re
import sys

import yaml

# Keywords allowed in a structural schema (apiextensions.k8s.io/v1 JSONSchemaProps), minus the
# ones sigil's CRDs must not need (allOf/anyOf/oneOf/not, $ref, nullable, ...).
STRUCTURAL_KEYWORDS = {
    "description", "type", "format", "title", "default", "enum", "maximum", "minimum",
    "exclusiveMaximum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems",
    "minItems", "uniqueItems", "multipleOf", "maxProperties", "minProperties", "required", "items",
    "properties", "additionalProperties", "example",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type", "x-kubernetes-validations",
}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}


class UnsupportedRule(Exception):
    pass


# ---- CEL subset -------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+)|(&&|\|\||==|!=|[!?:()+.])|([A-Za-z_][A-Za-z0-9_]*))")
_MISSING = object()


def _tokenize(rule):
    pos, out = 0, []
    rule = rule.strip()
    while pos < len(rule):
        m = _TOKEN.match(rule, pos)
        if not m or m.end() == pos:
            raise UnsupportedRule("cannot tokenize %r at %d" % (rule, pos))
        num, op, ident = m.groups()
        out.append(("int", int(num)) if num else ("op", op) if op else ("id", ident))
        pos = m.end()
    return out


class _Parser:
    """Pratt-style parser producing a closure env -> value."""

    def __init__(self, rule):
        self.rule = rule
        self.toks = _tokenize(rule)
        self.i = 0

    def peek(self, *vals):
        if self.i < len(self.toks) and self.toks[self.i][1] in vals:
            return self.toks[self.i][1]
        return None

    def take(self, val=None):
        if self.i >= len(self.toks):
            raise UnsupportedRule("unexpected end of %r" % self.rule)
        t = self.toks[self.i]
        if val is not None and t[1] != val:
            raise UnsupportedRule("expected %r in %r, got %r" % (val, self.rule, t[1]))
        self.i += 1
        return t

    def parse(self):
        fn = self.ternary()
        if self.i != len(self.toks):
            raise UnsupportedRule("trailing tokens in %r" % self.rule)
        return fn

    def ternary(self):
        cond = self.orr()
        if self.peek("?"):
            self.take("?")
            a = self.ternary()
            self.take(":")
            b = self.ternary()
            return lambda s: a(s) if _bool(cond(s)) else b(s)
        return cond

    def orr(self):
        left = self.andd()
        while self.peek("||"):
            self.take()
            right, prev = self.andd(), left
            left = (lambda p, r: lambda s: _bool(p(s)) or _bool(r(s)))(prev, right)
        return left

    def andd(self):
        left = self.eq()
        while self.peek("&&"):
            self.take()
            right, prev = self.eq(), left
            left = (lambda p, r: lambda s: _bool(p(s)) and _bool(r(s)))(prev, right)
        return left

    def eq(self):
        left = self.add()
        op = self.peek("==", "!=")
        if op:
            self.take()
            right = self.add()
            if op == "==":
                return lambda s: left(s) == right(s)
            return lambda s: left(s) != right(s)
        return left

    def add(self):
        left = self.unary()
        while self.peek("+"):
            self.take()
            right, prev = self.unary(), left
            left = (lambda p, r: lambda s: _int(p(s)) + _int(r(s)))(prev, right)
        return left

    def unary(self):
        if self.peek("!"):
            self.take()
            inner = self.unary()
            return lambda s: not _bool(inner(s))
        return self.primary()

    def primary(self):
        kind, val = self.take()
        if kind == "int":
            return lambda s: val
        if kind == "op" and val == "(":
            inner = self.ternary()
            self.take(")")
            return inner
        if kind == "id" and val in ("true", "false"):
            return lambda s: val == "true"
        if kind == "id" and val == "has":
            self.take("(")
            path = self.selector()
            self.take(")")
            return lambda s: _select(s, path) is not _MISSING
        if kind == "id" and val == "self":
            self.i -= 1
            path = self.selector()

            def get(s):
                v = _select(s, path)
                if v is _MISSING:
                    raise ValueError("no such key: %s" % ".".join(path))
                return v
            return get
        raise UnsupportedRule("unsupported token %r in %r" % (val, self.rule))

    def selector(self):
        self.take("self")
        path = []
        while self.peek("."):
            self.take(".")
            kind, name = self.take()
            if kind != "id":
                raise UnsupportedRule("bad field name in %r" % self.rule)
            path.append(name.replace("__dash__", "-").replace("__dot__", ".").replace("__underscores__", "__"))
        return path


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError("no such overload: %r is not a bool" % (v,))
    return v


def _int(v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("no such overload: %r is not an int" % (v,))
    return v


def _select(obj, path):
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return _MISSING
        obj = obj[p]
    return obj


_COMPILED = {}


def compile_rule(rule):
    """Compiles a CEL rule of the supported subset (raises UnsupportedRule otherwise)."""
    if rule not in _COMPILED:
        _COMPILED[rule] = _Parser(rule).parse()
    return _COMPILED[rule]


def eval_rule(rule, self_value):
    return compile_rule(rule)(self_value)


# ---- structural checks ------------------------------------------------------------------------

def structural_problems(schema, path="", root=True):
    """Problems that make a schema non-structural (or that sigil's CRDs must not have)."""
    out = []
    if not isinstance(schema, dict):
        return ["%s: schema is not a mapping" % (path or "/")]
    for k in schema:
        if k not in STRUCTURAL_KEYWORDS:
            out.append("%s: unknown or disallowed keyword %r" % (path or "/", k))
    t = schema.get("type")
    if t not in TYPES:
        out.append("%s: every node needs a type (got %r)" % (path or "/", t))
    if "properties" in schema and "additionalProperties" in schema:
        out.append("%s: properties and additionalProperties are mutually exclusive" % (path or "/"))
    if "properties" in schema and t != "object":
        out.append("%s: properties on a non-object" % path)
    if "items" in schema:
        if t != "array":
            out.append("%s: items on a non-array" % path)
        if not isinstance(schema["items"], dict):
            out.append("%s: items must be one schema" % path)
    if t == "array" and "items" not in schema:
        out.append("%s: an array needs items" % path)
    for e in schema.get("enum", []):
        if not _type_ok(t, e):
            out.append("%s: enum value %r is not a %s" % (path, e, t))
    if "default" in schema:
        errs = validate(schema, copy.deepcopy(schema["default"]), path)
        out.extend("%s: default does not validate: %s" % (path, e) for e in errs)
    if schema.get("x-kubernetes-list-type") == "map":
        item = schema.get("items", {})
        for key in schema.get("x-kubernetes-list-map-keys", []):
            if key not in item.get("required", []) and "default" not in item.get("properties", {}).get(key, {}):
                out.append("%s: list-map key %r must be required or defaulted" % (path, key))
    for r in schema.get("x-kubernetes-validations", []):
        if set(r) - {"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"}:
            out.append("%s: unknown x-kubernetes-validations field in %r" % (path, r))
        try:
            compile_rule(r["rule"])
        except UnsupportedRule as e:
            out.append("%s: %s" % (path, e))
    if root:
        md = schema.get("properties", {}).get("metadata")
        if md is not None and set(md) - {"type"}:
            out.append("/metadata: only `type: object` is allowed at the root's metadata here")
    for name, sub in schema.get("properties", {}).items():
        out.extend(structural_problems(sub, "%s/%s" % (path, name), root=False))
    if isinstance(schema.get("items"), dict):
        out.extend(structural_problems(schema["items"], path + "/items", root=False))
    return out


def _type_ok(t, v):
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "array":
        return isinstance(v, list)
    if t == "object":
        return isinstance(v, dict)
    return False


# ---- validation -------------------------------------------------------------------------------

def apply_defaults(schema, obj):
    """Fills in `default` for absent properties, recursively (the API server's defaulting)."""
    if isinstance(obj, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in obj and "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
            if name in obj:
                apply_defaults(sub, obj[name])
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for x in obj:
            apply_defaults(schema["items"], x)
    return obj


def _check_format(fmt, v):
    if fmt == "byte":
        try:
            base64.b64decode(v, validate=True)
            return True
        except (binascii.Error, ValueError):
            return False
    if fmt == "date-time":
        try:
            datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
            return True
        except ValueError:
            return False
    return True


def validate(schema, obj, path=""):
    """Error messages for obj against schema (empty: valid). Defaults must be applied first."""
    errs = []
    where = path or "<root>"
    t = schema.get("type")
    if t and not _type_ok(t, obj):
        return ["%s: Invalid value: %r: must be of type %s" % (where, obj, t)]
    if "enum" in schema and obj not in schema["enum"]:
        errs.append("%s: Unsupported value: %r: supported values: %s" % (where, obj, ", ".join(map(repr, schema["enum"]))))
    if isinstance(obj, str):
        if "minLength" in schema and len(obj) < schema["minLength"]:
            errs.append("%s: Invalid value: should be at least %d chars long" % (where, schema["minLength"]))
        if "maxLength" in schema and len(obj) > schema["maxLength"]:
            errs.append("%s: Too long: may not be longer than %d" % (where, schema["maxLength"]))
        if "pattern" in schema and not re.search(schema["pattern"], obj):
            errs.append("%s: Invalid value: should match %r" % (where, schema["pattern"]))
        if "format" in schema and not _check_format(schema["format"], obj):
            errs.append("%s: Invalid value: must be of format %s" % (where, schema["format"]))
    if isinstance(obj, int) and not isinstance(obj, bool):
        if "minimum" in schema and obj < schema["minimum"]:
            errs.append("%s: Invalid value: should be greater than or equal to %s" % (where, schema["minimum"]))
        if "maximum" in schema and obj > schema["maximum"]:
            errs.append("%s: Invalid value: should be less than or equal to %s" % (where, schema["maximum"]))
    if isinstance(obj, dict):
        for r in schema.get("required", []):
            if r not in obj:
                errs.append("%s.%s: Required value" % (path, r) if path else "%s: Required value" % r)
        props = schema.get("properties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        for k, v in obj.items():
            child = "%s.%s" % (path, k) if path else k
            if props is not None and k in props:
                errs.extend(validate(props[k], v, child))
            elif isinstance(schema.get("additionalProperties"), dict):
                errs.extend(validate(schema["additionalProperties"], v, child))
            elif not preserve and not (path == "metadata" or (path == "" and k == "metadata")):
                errs.append('%s: unknown field "%s"' % (where, child))
    if isinstance(obj, list):
        if "minItems" in schema and len(obj) < schema["minItems"]:
            errs.append("%s: Invalid value: %d: should have at least %d items" % (where, len(obj), schema["minItems"]))
        if "maxItems" in schema and len(obj) > schema["maxItems"]:
            errs.append("%s: Too many: %d: must have at most %d items" % (where, len(obj), schema["maxItems"]))
        if isinstance(schema.get("items"), dict):
            for i, x in enumerate(obj):
                errs.extend(validate(schema["items"], x, "%s[%d]" % (path, i)))
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen = set()
            for i, x in enumerate(obj):
                k = tuple(x.get(key) for key in keys) if isinstance(x, dict) else None
                if k in seen:
                    errs.append("%s[%d]: Duplicate value: %r" % (path, i, k))
                seen.add(k)
    if not errs:  # the API server evaluates CEL only on nodes that passed the schema
        for r in schema.get("x-kubernetes-validations", []):
            try:
                ok = eval_rule(r["rule"], obj)
            except ValueError as e:
                errs.append("%s: Invalid value: rule %r failed: %s" % (where, r["rule"], e))
                continue
            if ok is not True:
                errs.append("%s: Invalid value: %s" % (where, r.get("message", "failed rule: " + r["rule"])))
    return errs


# ---- CRDs and objects -------------------------------------------------------------------------

def load_crds(crd_dir):
    """{(group, version, kind): (crd, openAPIV3Schema)} for every CRD file in crd_dir."""
    out = {}
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(crd_dir, name)) as f:
            for crd in yaml.safe_load_all(f):
                if not crd:
                    continue
                spec = crd["spec"]
                for v in spec["versions"]:
                    out[(spec["group"], v["name"], spec["names"]["kind"])] = (crd, v["schema"]["openAPIV3Schema"])
    return out


def validate_object(crds, obj):
    """Validates one custom object like `kubectl apply --validate=strict` would (after defaulting)."""
    api = obj.get("apiVersion", "")
    group, _, version = api.partition("/")
    key = (group, version, obj.get("kind"))
    if key not in crds:
        return ["no CRD serves %s %s" % (api, obj.get("kind"))]
    crd, schema = crds[key]
    errs = []
    md = obj.get("metadata") or {}
    if not md.get("name"):
        errs.append("metadata.name: Required value")
    namespaced = crd["spec"]["scope"] == "Namespaced"
    if namespaced and not md.get("namespace"):
        errs.append("metadata.namespace: Required value (a %s is namespaced)" % obj.get("kind"))
    if not namespaced and md.get("namespace"):
        errs.append("metadata.namespace: a %s is cluster-scoped" % obj.get("kind"))
    obj = apply_defaults(schema, copy.deepcopy(obj))
    return errs + validate(schema, obj)


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    crds = load_crds(argv[1])
    bad = 0
    for path in argv[2:]:
        with open(path) as f:
            for obj in yaml.safe_load_all(f):
                if not obj:
                    continue
                errs = validate_object(crds, obj)
                name = "%s %s" % (obj.get("kind"), (obj.get("metadata") or {}).get("name"))
                print("%s: %s: %s" % (path, name, "ok" if not errs else "INVALID"))
                for e in errs:
                    print("  " + e)
                bad += bool(errs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
