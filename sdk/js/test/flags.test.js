// Flags through the client: values, defaults, and exposures queued exactly when an experiment
// rule decides with an `assigned` answer (docs/assignment.md section 6a).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Client, Evaluator } from "../src/index.js";

const path = process.env.VECTORS ?? fileURLToPath(new URL("../../../assignment/vectors.json", import.meta.url));
const DATA = JSON.parse(readFileSync(path, "utf8"));

function documentWithGatedFlag() {
  const doc = structuredClone(DATA.document);
  doc.flags.push({
    key: "gated", type: "number", default: -1, enabled: true, unit_salt: "",
    rules: [
      { id: "g1", type: "force", audiences: ["eu"], value: 1 },
      // reshuffled: running, 100 % allocation, no targeting: every unit is "assigned"
      { id: "g2", type: "experiment", experiment: "reshuffled", values: { control: 10, treatment: 20 } },
    ],
  });
  return doc;
}

function offlineClient(doc) {
  const client = new Client({ baseUrl: "http://127.0.0.1:9", apiKey: "k", autoStart: false });
  client.evaluator = new Evaluator(doc);
  return client;
}

test("an experiment rule queues an exposure only when it decides", () => {
  const client = offlineClient(documentWithGatedFlag());
  const forced = client.getFlag("gated", "u-1", { country: "DE" });
  assert.deepEqual([forced.value, forced.reason, forced.ruleId], [1, "force", "g1"]);
  assert.equal(client.queueSize, 0, "the experiment did not decide");
  const decided = client.getFlag("gated", "u-1", { country: "US" });
  assert.equal(decided.reason, "experiment");
  assert.equal(decided.experiment, "reshuffled");
  assert.equal(decided.value, { control: 10, treatment: 20 }[decided.variant]);
  assert.equal(client.queueSize, 1);
  client.getFlag("gated", "u-1", { country: "US" });
  assert.equal(client.queueSize, 1, "deduplicated like assign");
  const override = client.getFlag("layout", "qa-user-1", {});
  assert.deepEqual([override.reason, override.ruleId, override.variant], ["experiment", "r11", "treatment"]);
  assert.equal(client.queueSize, 1, "an override is never an exposure");
});

test("defaults: unknown flag, no configuration; getFlags answers every flag", () => {
  const client = offlineClient(DATA.document);
  const unknown = client.getFlag("no-such", "u-1", {}, "fallback");
  assert.deepEqual([unknown.value, unknown.reason], ["fallback", "unknown_flag"]);
  const all = client.getFlags("u-1", { country: "DE", age: 30 });
  assert.deepEqual(Object.keys(all).sort(), DATA.document.flags.map((f) => f.key).sort());
  assert.equal(all["kill-switch"].reason, "disabled");
  assert.equal(all["new-checkout"].value, true);
  const empty = new Client({ baseUrl: "http://127.0.0.1:9", apiKey: "k", autoStart: false });
  const none = empty.getFlag("new-checkout", "u-1", {}, true);
  assert.deepEqual([none.value, none.reason], [true, "no_config"]);
});

test("malformed flags are skipped, not fatal; results are frozen", () => {
  const doc = { ...DATA.document, flags: [null, { key: "x", rules: [null, { type: "bogus" }] }, 3] };
  const r = new Evaluator(doc).flags.evaluate("x", "u");
  assert.equal(r.reason, "default");
  assert.ok(Object.isFrozen(r));
});
