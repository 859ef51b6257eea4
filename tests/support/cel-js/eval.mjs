// Evaluates webhook matchConditions the way the API server does: each CEL expression over the
// variables `request`, `object` and `oldObject` (JSON turned into CEL maps and lists, integers as
// CEL ints). Reads {"conditions": [{name, expression}], "cases": [{name, request, object,
// oldObject}]} on stdin; writes {"<case>": {"<condition>": true | false | "error: ..."}}.
import { run, isCelError } from "@bufbuild/cel";

function toCel(v) {
  if (Array.isArray(v)) return v.map(toCel);
  if (v !== null && typeof v === "object") return new Map(Object.entries(v).map(([k, x]) => [k, toCel(x)]));
  if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
  return v;
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { conditions, cases } = JSON.parse(input);
const out = {};
for (const c of cases) {
  const vars = { request: toCel(c.request), object: toCel(c.object ?? null), oldObject: toCel(c.oldObject ?? null) };
  out[c.name] = {};
  for (const cond of conditions) {
    let r;
    try {
      r = run(cond.expression, vars);
    } catch (e) {
      r = e;
    }
    out[c.name][cond.name] = isCelError(r) || r instanceof Error ? "error: " + r.message : typeof r === "boolean" ? r : "error: not a bool: " + String(r);
  }
}
process.stdout.write(JSON.stringify(out));
