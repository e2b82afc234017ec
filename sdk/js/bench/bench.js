// Evaluations per second of one core with exposure logging on (every evaluation a new unit).
//   node bench/bench.js [seconds]
import { Client, Evaluator } from "../src/index.js";

const seconds = Number(process.argv[2] ?? 2);
const variants = [{ key: "control", weight: 50, is_control: true, payload: {} }, { key: "green", weight: 50, is_control: false, payload: { color: "green" } }];
const experiment = (key, targeting = []) => ({ key, status: "running", salt: key, traffic_allocation: 100, layer: null, layer_range: null, variants, targeting, overrides: {}, shipped_variant: null });
const doc = { schema_version: 1, version: "bench", hash: { algorithm: "sha256", buckets: 10000 }, layers: {},
  experiments: [experiment("plain"), experiment("targeted", [{ attribute: "country", operator: "in", values: ["CN", "US"] }])],
  audiences: { eu: { match: "all", conditions: [{ attribute: "country", operator: "in", values: ["DE", "FR"] }] } },
  // A flag with three rules: a force rule whose audience fails, a units rule that does not list
  // the unit, a 50 % rollout that hashes (bench/bench_flags.py measures the same in Python).
  flags: [{ key: "new-checkout", type: "boolean", default: false, enabled: true, unit_salt: "", rules: [
    { id: "r1", type: "force", audiences: ["eu"], value: true },
    { id: "r2", type: "units", units: { "qa-user-1": true }, hashed_units: {} },
    { id: "r3", type: "rollout", audiences: [], value: true, percent: 50, salt: "new-checkout" }] }] };

function rate(fn) {
  let n = 0;
  const start = process.cpuUsage();
  const spent = () => { const u = process.cpuUsage(start); return (u.user + u.system) / 1e6; };
  while (spent() < seconds) for (let i = 0; i < 20000; i++, n++) fn(`user-${n}`);
  return n / spent();
}

const evaluator = new Evaluator(doc);
const client = new Client({ baseUrl: "http://127.0.0.1:9", apiKey: "bench", bootstrap: doc, autoStart: false, maxQueue: 10000 });
const attrs = { country: "CN" };
console.log(`Node ${process.version}; evaluations per CPU second of one core`);
for (const key of ["plain", "targeted"]) {
  const withLog = rate((u) => client.assign(key, u, attrs));
  const bare = rate((u) => evaluator.evaluate(key, u, attrs));
  console.log(`${key.padEnd(9)} with exposures ${Math.round(withLog).toLocaleString("en")}/s, evaluator alone ${Math.round(bare).toLocaleString("en")}/s`);
}
console.log(`flag, 3 rules: client.getFlag ${Math.round(rate((u) => client.getFlag("new-checkout", u, attrs))).toLocaleString("en")}/s`);
console.log(`queued ${client.stats.queued.toLocaleString("en")}, dropped ${client.stats.dropped.toLocaleString("en")} (queue bound 10,000, no server)`);
