// Every vector of assignment/vectors.json, read at test time (VECTORS env var overrides the path)
// so vectors added later (operators, phases, hashed overrides) are checked too.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { Evaluator, bucket, variantRanges, rulePasses, overrideHash, DocumentError } from "../src/index.js";
import { sha256Hex } from "../src/sha256.js";

const path = process.env.VECTORS ?? fileURLToPath(new URL("../../../assignment/vectors.json", import.meta.url));
const DATA = JSON.parse(readFileSync(path, "utf8"));

test("sha256 matches node:crypto on awkward lengths and non-ASCII", () => {
  for (const text of ["", "a", "x".repeat(55), "x".repeat(56), "x".repeat(64), "x".repeat(1000), "ünit-ß 用户 😀"]) {
    assert.equal(sha256Hex(text), createHash("sha256").update(text, "utf8").digest("hex"));
  }
});

test("hash vectors", () => {
  for (const c of DATA.hash) assert.equal(bucket(c.namespace, c.salt, c.unit_id), c.bucket, JSON.stringify(c));
});

test("range vectors", () => {
  for (const c of DATA.ranges) assert.deepEqual(variantRanges(c.weights, c.traffic_allocation), c.ranges, JSON.stringify(c));
});

test("case vectors, one by one and with evaluateMany", () => {
  const evaluator = new Evaluator(DATA.document);
  assert.ok(DATA.cases.length > 50);
  for (const c of DATA.cases) {
    const a = evaluator.evaluate(c.experiment, c.unit_id, c.attributes);
    assert.deepEqual([a.variant, a.inExperiment, a.reason], [c.variant, c.in_experiment, c.reason], JSON.stringify(c));
    const [b] = evaluator.evaluateMany(c.unit_id, c.attributes, [c.experiment]);
    assert.deepEqual([b.variant, b.reason], [c.variant, c.reason]);
  }
});

test("targeting vectors", { skip: !DATA.targeting && "no targeting vectors in this version" }, () => {
  for (const c of DATA.targeting) assert.equal(rulePasses(c.rule, c.attributes), c.passes, JSON.stringify(c));
});

test("hashed override vectors", { skip: !DATA.overrides && "no hashed-override vectors in this version" }, () => {
  for (const c of DATA.overrides) assert.equal(overrideHash(c.override_salt, c.unit_id), c.hash, JSON.stringify(c));
  const evaluator = new Evaluator(DATA.client_document);
  for (const c of DATA.client_cases) {
    const a = evaluator.evaluate(c.experiment, c.unit_id, c.attributes);
    assert.deepEqual([a.variant, a.inExperiment, a.reason], [c.variant, c.in_experiment, c.reason], JSON.stringify(c));
  }
});

test("bad documents are refused", () => {
  for (const doc of [[], null, { schema_version: 2, experiments: [] },
    { schema_version: 1, hash: { algorithm: "md5", buckets: 10000 }, experiments: [] },
    { schema_version: 1, experiments: "nope" }, { schema_version: 1, experiments: [{ key: "a" }] },
    { schema_version: 1, experiments: [{ key: "a", status: "running", layer: "missing" }] }]) {
    assert.throws(() => new Evaluator(doc), DocumentError);
  }
});

test("unknown experiment answers instead of throwing", () => {
  const a = new Evaluator(DATA.document).evaluate("no-such", "u-1");
  assert.deepEqual([a.variant, a.inExperiment, a.reason], [null, false, "unknown_experiment"]);
});

test("attribute names from Object.prototype are not attributes", () => {
  const rule = { attribute: "constructor", operator: "exists", values: [] };
  assert.equal(rulePasses(rule, {}), false);
});

for (const [cases, doc] of [["flag_cases", "document"], ["client_flag_cases", "client_document"]]) {
  test(`flag vectors (${cases})`, { skip: !DATA[cases] && "no flag vectors in this version" }, () => {
    const evaluator = new Evaluator(DATA[doc]);
    const reasons = new Set(DATA[cases].map((c) => c.reason));
    for (const r of ["force", "units", "rollout", "experiment", "default", "disabled", "unknown_flag"]) assert.ok(reasons.has(r), r);
    for (const c of DATA[cases]) {
      const r = evaluator.flags.evaluate(c.flag, c.unit_id, c.attributes);
      assert.deepEqual([r.value, r.reason, r.ruleId, r.variant], [c.value, c.reason, c.rule_id, c.variant], JSON.stringify(c));
    }
  });
}
