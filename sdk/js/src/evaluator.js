// Local assignment from the configuration document, per docs/assignment.md. Pure computation:
// no I/O, synchronous. Checked against assignment/vectors.json by test/vectors.test.js.

import { sha256Hex, sha256Words } from "./sha256.js";
import { Audiences } from "./audiences.js";
import { FlagEvaluator } from "./flags.js";

export const SCHEMA_VERSION = 1;
export const BUCKETS = 10000;

/**
 * @typedef {Object<string, string|number|boolean|null>} Attributes
 * @typedef {{experiment: string, variant: string|null, inExperiment: boolean, reason: string,
 *            detail: string, payload: any, phase: (number|null)}} Assignment
 *   `reason`: assigned | override | not_running | targeting | layer_holdout |
 *   layer_other_experiment | traffic_allocation | shipped | disabled_in_environment, and in the SDK only
 *   unknown_experiment | no_config.
 * @typedef {{attribute: string, operator: string, values: any[]}} Rule
 */

const hasOwn = (obj, key) => obj != null && Object.prototype.hasOwnProperty.call(obj, key);
const get = (obj, key) => (hasOwn(obj, key) ? obj[key] : undefined);

/** Python's `x or default`: empty containers, "", 0, false, null all fall back. */
function orDefault(value, fallback) {
  if (value === null || value === undefined || value === false || value === 0 || value === "") return fallback;
  if (Array.isArray(value) && value.length === 0) return fallback;
  if (typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0) return fallback;
  return value;
}

// --- hashing (section 1) and percentages (section 2) ---------------------------------------------

/**
 * uint64_be(SHA-256(namespace:salt:unit_id)[0:8]) mod 10000, without BigInt:
 * (hi * 2^32 + lo) mod 10000 = ((hi mod 10000) * 7296 + lo) mod 10000.
 * @param {string} namespace @param {string} salt @param {string} unitId
 * @returns {number}
 */
export function bucket(namespace, salt, unitId) {
  const words = sha256Words(`${namespace}:${salt}:${unitId}`);
  return (((words[0] % BUCKETS) * 7296) + words[1]) % BUCKETS;
}

/**
 * Hex SHA-256 of `override:<salt>:<unitId>`: how a client-safe document names QA units.
 * @param {string} overrideSalt @param {string} unitId @returns {string}
 */
export function overrideHash(overrideSalt, unitId) {
  return sha256Hex(`override:${overrideSalt}:${unitId}`);
}

/** @param {number|string} percent @returns {number} */
export function percentToUnits(percent) {
  const units = Math.trunc(Number(percent) * 100 + 0.5 + 1e-9);
  return Math.max(0, Math.min(BUCKETS, units));
}

/**
 * `[start, end)` buckets of each variant (section 3); integer arithmetic only.
 * @param {Array<number|string>} weights @param {number|string} trafficAllocation
 * @returns {Array<[number, number]>}
 */
export function variantRanges(weights, trafficAllocation) {
  const units = weights.map(percentToUnits);
  const total = units.reduce((a, b) => a + b, 0);
  const allocation = percentToUnits(trafficAllocation);
  if (total <= 0) return units.map(() => [0, 0]);
  const bounds = [0];
  let running = 0;
  for (const u of units) {
    running += u;
    bounds.push(Math.floor((BUCKETS * running) / total));
  }
  return units.map((_, i) => [
    bounds[i], bounds[i] + Math.floor(((bounds[i + 1] - bounds[i]) * allocation) / BUCKETS),
  ]);
}

// --- operands (section 5) ------------------------------------------------------------------------

const DECIMAL = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
const PRE_ID = "(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)";
const SEMVER = new RegExp(
  `^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(?:-(${PRE_ID}(?:\\.${PRE_ID})*))?` +
  "(?:\\+([0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*))?$",
);
const INSTANT = /^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-][0-9]{2}:[0-9]{2}))?$/;

/** A finite number for numbers and decimal strings, else null (booleans too). */
export function asNumber(value) {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "string" && DECIMAL.test(value)) {
    const n = Number(value);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
// Digit strings without leading zeros: longer is larger, equal lengths compare lexically.
const cmpDigits = (a, b) => (a.length !== b.length ? cmp(a.length, b.length) : cmp(a, b));

/** Parsed semantic version (build metadata dropped), or null. */
export function semverKey(value) {
  if (typeof value !== "string") return null;
  const m = SEMVER.exec(value);
  if (!m) return null;
  return { core: [m[1], m[2], m[3]], pre: m[4] === undefined ? null : m[4].split(".") };
}

/** semver.org section 11 precedence: -1, 0 or 1. */
export function compareSemver(a, b) {
  for (let i = 0; i < 3; i++) {
    const c = cmpDigits(a.core[i], b.core[i]);
    if (c) return c;
  }
  if (a.pre === null || b.pre === null) return a.pre === b.pre ? 0 : a.pre === null ? 1 : -1;
  const n = Math.min(a.pre.length, b.pre.length);
  for (let i = 0; i < n; i++) {
    const x = a.pre[i], y = b.pre[i];
    const xn = /^[0-9]+$/.test(x), yn = /^[0-9]+$/.test(y);
    let c;
    if (xn && yn) c = cmpDigits(x, y);
    else if (xn !== yn) c = xn ? -1 : 1;
    else c = cmp(x, y); // ASCII only (the pattern allows nothing else): code units = bytes
    if (c) return c;
  }
  return cmp(a.pre.length, b.pre.length);
}

function daysFromCivil(year, month, day) {
  year -= month <= 2 ? 1 : 0;
  const era = Math.floor(year / 400);
  const yoe = year - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function daysInMonth(year, month) {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** [epoch seconds, nanoseconds] of an ISO 8601 date or offset timestamp, or null. */
export function instantKey(value) {
  if (typeof value !== "string") return null;
  const m = INSTANT.exec(value);
  if (!m) return null;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  const [hour, minute, second] = [Number(m[4] || 0), Number(m[5] || 0), Number(m[6] || 0)];
  if (hour > 23 || minute > 59 || second > 59) return null;
  let offset = 0;
  const zone = m[8];
  if (zone && zone !== "Z") {
    const oh = Number(zone.slice(1, 3)), om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return null;
    offset = (oh * 3600 + om * 60) * (zone[0] === "+" ? 1 : -1);
  }
  const seconds = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
  return [seconds, Number((m[7] || "").padEnd(9, "0"))];
}

const compareInstant = (a, b) => cmp(a[0], b[0]) || cmp(a[1], b[1]);

const BOOL_STRINGS = { true: true, false: false };

/** Equality of section 5. */
export function same(attribute, value) {
  if (typeof attribute === "boolean" || typeof value === "boolean") {
    const left = typeof attribute === "string" ? get(BOOL_STRINGS, attribute) : attribute;
    const right = typeof value === "string" ? get(BOOL_STRINGS, value) : value;
    return typeof left === "boolean" && typeof right === "boolean" && left === right;
  }
  if (typeof attribute === "string" && typeof value === "string") return attribute === value;
  const l = asNumber(attribute), r = asNumber(value);
  return l !== null && r !== null && l === r;
}

const ORDERED = {
  gt: [asNumber, cmp, (c) => c > 0], gte: [asNumber, cmp, (c) => c >= 0],
  lt: [asNumber, cmp, (c) => c < 0], lte: [asNumber, cmp, (c) => c <= 0],
  semver_eq: [semverKey, compareSemver, (c) => c === 0],
  semver_gt: [semverKey, compareSemver, (c) => c > 0],
  semver_gte: [semverKey, compareSemver, (c) => c >= 0],
  semver_lt: [semverKey, compareSemver, (c) => c < 0],
  semver_lte: [semverKey, compareSemver, (c) => c <= 0],
  before: [instantKey, compareInstant, (c) => c < 0],
  after: [instantKey, compareInstant, (c) => c > 0],
};

/**
 * One rule -> a check that returns null when it passes, else why it failed.
 * @param {Rule} rule @returns {(attrs: Attributes) => (string|null)}
 */
export function compileRule(rule) {
  const name = String(get(rule, "attribute") ?? "");
  const operator = get(rule, "operator");
  const values = Array.isArray(rule.values) ? rule.values : [];
  const first = values.length ? values[0] : null;
  const failed = `${name} fails ${operator}`;
  const read = (attrs) => {
    const v = get(attrs, name);
    return v === undefined ? null : v;
  };
  if (operator === "exists") return (attrs) => (read(attrs) !== null ? null : failed);
  if (operator === "not_exists") return (attrs) => (read(attrs) === null ? null : failed);
  if (["equals", "not_equals", "in", "not_in"].includes(operator)) {
    const candidates = operator === "equals" || operator === "not_equals" ? [first] : values;
    const negate = operator === "not_equals" || operator === "not_in";
    return (attrs) => {
      const value = read(attrs);
      if (value === null) return failed;
      const hit = candidates.some((c) => same(value, c));
      return hit === negate ? failed : null;
    };
  }
  if (hasOwn(ORDERED, operator)) {
    const [key, compare, ok] = ORDERED[operator];
    const bound = key(first);
    return (attrs) => {
      const value = read(attrs);
      if (value === null || bound === null) return failed;
      const k = key(value);
      return k !== null && ok(compare(k, bound)) ? null : failed;
    };
  }
  if (operator === "contains") {
    return (attrs) => {
      const value = read(attrs);
      return typeof value === "string" && typeof first === "string" && value.includes(first) ? null : failed;
    };
  }
  return () => `unknown operator ${JSON.stringify(operator)}`;
}

/** @param {Rule} rule @param {Attributes} attributes @returns {boolean} */
export function rulePasses(rule, attributes) {
  return compileRule(rule)(attributes) === null;
}

// --- the evaluator (sections 3, 4, 6, 7) ---------------------------------------------------------

export class DocumentError extends Error {}

const OVERRIDABLE = new Set(["draft", "running", "paused"]);
const SHIPPABLE = new Set(["completed", "archived"]);

/** @returns {Assignment} */
function answer(experiment, variant, inExperiment, reason, detail, payload, phase = null) {
  return { experiment, variant, inExperiment, reason, detail, payload, phase };
}

class CompiledExperiment {
  constructor(spec, layers, audiences = null) {
    if (spec === null || typeof spec !== "object" || !hasOwn(spec, "key") || !hasOwn(spec, "status")) {
      throw new DocumentError("experiment entry is malformed");
    }
    this.key = String(spec.key);
    this.status = String(spec.status);
    this.running = this.status === "running";
    this.phase = get(spec, "phase") ?? null;
    this.salt = String(orDefault(get(spec, "salt"), this.key));
    const variants = orDefault(get(spec, "variants"), []);
    if (!Array.isArray(variants)) throw new DocumentError(`variants of ${this.key} must be a list`);
    this.variants = new Map();
    for (const v of variants) {
      if (v === null || typeof v !== "object" || !hasOwn(v, "key")) throw new DocumentError("variant is malformed");
      this.variants.set(String(v.key), orDefault(get(v, "payload"), {}));
    }
    const control = variants.find((v) => v.is_control) ?? variants[0];
    this.control = control ? [String(control.key), orDefault(get(control, "payload"), {})] : [null, {}];
    const bounds = variantRanges(variants.map((v) => get(v, "weight") ?? 0), get(spec, "traffic_allocation") ?? 100);
    this.ranges = [];
    variants.forEach((v, i) => {
      if (bounds[i][1] > bounds[i][0]) this.ranges.push([bounds[i][0], bounds[i][1], String(v.key), orDefault(get(v, "payload"), {})]);
    });
    this.checks = (orDefault(get(spec, "targeting"), [])).map(compileRule);
    if (audiences) this.checks.push(...audiences.checks(get(spec, "audiences"))); // section 5a
    this.layer = null;
    this.layerStart = 0;
    this.layerEnd = 0;
    const layerKey = get(spec, "layer");
    if (layerKey !== undefined && layerKey !== null) {
      if (!layers.has(layerKey)) throw new DocumentError(`experiment ${this.key} names unknown layer ${layerKey}`);
      this.layer = layers.get(layerKey);
      const range = get(spec, "layer_range");
      if (Array.isArray(range) && range.length) [this.layerStart, this.layerEnd] = [Number(range[0]), Number(range[1])];
    }
    this.overrides = new Map();
    for (const [unit, variant] of Object.entries(orDefault(get(spec, "overrides"), {}))) {
      if (this.variants.has(String(variant))) this.overrides.set(unit, String(variant));
    }
    this.overrideSalt = String(orDefault(get(spec, "override_salt"), ""));
    this.hashedOverrides = new Map();
    for (const [hash, variant] of Object.entries(orDefault(get(spec, "hashed_overrides"), {}))) {
      if (this.variants.has(String(variant))) this.hashedOverrides.set(hash, String(variant));
    }
    this.fixed = null;
    const shipped = get(spec, "shipped_variant");
    if (shipped !== undefined && shipped !== null && SHIPPABLE.has(this.status) && this.variants.has(String(shipped))) {
      this.fixed = answer(this.key, String(shipped), false, "shipped", `experiment is ${this.status}`, this.variants.get(String(shipped)));
    } else if (get(spec, "enabled") === false) {
      this.fixed = answer(this.key, this.control[0], false, "disabled_in_environment", "experiment is switched off in this environment", this.control[1]);
    } else if (!this.running) {
      this.fixed = answer(this.key, this.control[0], false, "not_running", `experiment is ${this.status}`, this.control[1]);
    }
  }

  forced(unitId) {
    if (this.overrides.size && this.overrides.has(unitId)) return this.overrides.get(unitId);
    if (this.hashedOverrides.size) return this.hashedOverrides.get(overrideHash(this.overrideSalt, unitId)) ?? null;
    return null;
  }

  fallback(reason, detail) {
    return answer(this.key, this.control[0], false, reason, detail, this.control[1]);
  }

  evaluate(unitId, attributes, layerBuckets) {
    const fixed = this.fixed;
    if (fixed !== null && !OVERRIDABLE.has(this.status)) return { ...fixed };
    const forced = this.forced(unitId);
    if (forced !== null) {
      return answer(this.key, forced, this.running, "override", `unit is forced into ${forced}`, this.variants.get(forced), this.phase);
    }
    if (fixed !== null) return { ...fixed };
    for (const check of this.checks) {
      const failure = check(attributes);
      if (failure !== null) return this.fallback("targeting", failure);
    }
    if (this.layer !== null) {
      const [key, salt, holdoutEnd] = this.layer;
      let slot = layerBuckets ? layerBuckets.get(key) : undefined;
      if (slot === undefined) {
        slot = bucket("layer", salt, unitId);
        if (layerBuckets) layerBuckets.set(key, slot);
      }
      if (slot < holdoutEnd) return this.fallback("layer_holdout", `unit is in the holdout of layer ${key}`);
      if (!(this.layerStart <= slot && slot < this.layerEnd)) {
        return this.fallback("layer_other_experiment", `unit belongs to another experiment of layer ${key}`);
      }
    }
    const b = bucket("exp", this.salt, unitId);
    for (const [start, end, variant, payload] of this.ranges) {
      if (start <= b && b < end) return answer(this.key, variant, true, "assigned", "unit hashed into variant", payload, this.phase);
    }
    return this.fallback("traffic_allocation", "unit is outside the traffic allocation");
  }
}

/** The compiled form of one configuration document. */
export class Evaluator {
  /** @param {any} document the JSON of GET /api/v1/config */
  constructor(document) {
    if (document === null || typeof document !== "object" || Array.isArray(document)) {
      throw new DocumentError("the document must be a JSON object");
    }
    if (document.schema_version !== SCHEMA_VERSION) throw new DocumentError(`unsupported schema_version ${document.schema_version}`);
    const hashing = orDefault(get(document, "hash"), {});
    if ((hashing.algorithm ?? "sha256") !== "sha256" || (hashing.buckets ?? BUCKETS) !== BUCKETS) {
      throw new DocumentError("unsupported hash settings");
    }
    if (!Array.isArray(document.experiments)) throw new DocumentError("experiments must be a list");
    /** @type {string|null} */
    this.version = get(document, "version") ?? null;
    this.document = document;
    const layers = new Map();
    for (const [key, spec] of Object.entries(orDefault(get(document, "layers"), {}))) {
      if (spec === null || typeof spec !== "object") throw new DocumentError(`layer ${key} is malformed`);
      layers.set(key, [key, String(orDefault(get(spec, "salt"), key)), percentToUnits(orDefault(get(spec, "holdout_percent"), 0))]);
    }
    /** @type {Map<string, CompiledExperiment>} */
    this.experiments = new Map();
    const audiences = new Audiences(get(document, "audiences"));
    for (const spec of document.experiments) {
      const compiled = new CompiledExperiment(spec, layers, audiences);
      this.experiments.set(compiled.key, compiled);
    }
    this.runningKeys = [...this.experiments.values()].filter((e) => e.running).map((e) => e.key);
    /** The document's feature flags (flags.js), sharing the compiled experiments. */
    this.flags = new FlagEvaluator(get(document, "flags"), this.experiments, audiences);
  }

  /** @param {string} key @returns {boolean} */
  has(key) {
    return this.experiments.has(key);
  }

  /**
   * The answer for one experiment; an unknown key answers `unknown_experiment`.
   * @param {string} key @param {string} unitId @param {Attributes} [attributes]
   * @returns {Assignment}
   */
  evaluate(key, unitId, attributes = {}) {
    const experiment = this.experiments.get(key);
    if (!experiment) return answer(key, null, false, "unknown_experiment", "no such experiment", {});
    return experiment.evaluate(String(unitId), attributes ?? {}, null);
  }

  /**
   * Answers for `keys` (default: every running experiment), one layer hash per layer.
   * @param {string} unitId @param {Attributes} [attributes] @param {string[]} [keys]
   * @returns {Assignment[]}
   */
  evaluateMany(unitId, attributes = {}, keys = undefined) {
    const layerBuckets = new Map();
    return (keys ?? this.runningKeys).map((key) => {
      const experiment = this.experiments.get(key);
      if (!experiment) return answer(key, null, false, "unknown_experiment", "no such experiment", {});
      return experiment.evaluate(String(unitId), attributes ?? {}, layerBuckets);
    });
  }
}
