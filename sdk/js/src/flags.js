// Feature flags from the configuration document (docs/assignment.md section 6a). The first rule
// that matches decides: force (in every audience), units (listed ids, hashed in the client
// document), rollout (in every audience and bucket("flag", salt, unitId) < units(percent):
// ramping up only adds units) or experiment (the experiment enrols the unit in a variant listed
// in `values`; the client logs that exposure as `assign` does). Otherwise the default; a
// switched-off flag answers its default with reason `disabled`.

import { BUCKETS, bucket, overrideHash, percentToUnits } from "./evaluator.js";

/**
 * @typedef {{key: string, value: any, reason: string, ruleId: (string|null),
 *            experiment: (string|null), variant: (string|null),
 *            assignment: (import("./evaluator.js").Assignment|null)}} FlagResult
 *   `reason`: force | units | rollout | experiment | default | disabled | unknown_flag, and in
 *   the client only no_config. `value` may be shared between calls: treat it as read-only.
 *   `assignment`: the experiment's answer when an experiment rule decided.
 */

const hasOwn = (obj, key) => obj != null && Object.prototype.hasOwnProperty.call(obj, key);

/** @returns {FlagResult} */
export function flagResult(key, value, reason, ruleId = null, experiment = null, variant = null, assignment = null) {
  return Object.freeze({ key, value, reason, ruleId, experiment, variant, assignment });
}

function gate(checks, then) {
  if (!checks.length) return then;
  return (unitId, attrs) => {
    for (const check of checks) if (check(attrs) !== null) return null;
    return then(unitId, attrs);
  };
}

function compileFlagRule(key, spec, unitSalt, experiments, audiences) {
  const ruleId = spec.id === undefined || spec.id === null ? null : String(spec.id);
  const kind = spec.type;
  if (kind === "force" || kind === "rollout") {
    const result = flagResult(key, hasOwn(spec, "value") ? spec.value : null, kind, ruleId);
    const checks = audiences.checks(spec.audiences);
    if (kind === "force") return gate(checks, () => result);
    const threshold = percentToUnits(spec.percent || 0);
    if (threshold <= 0) return null;
    if (threshold >= BUCKETS) return gate(checks, () => result);
    const salt = String(spec.salt || key);
    return gate(checks, (unitId) => (bucket("flag", salt, unitId) < threshold ? result : null));
  }
  if (kind === "units") {
    const listed = new Map(Object.entries(spec.units ?? {}).map(([u, v]) => [u, flagResult(key, v, "units", ruleId)]));
    const hashed = new Map(Object.entries(spec.hashed_units ?? {}).map(([h, v]) => [h, flagResult(key, v, "units", ruleId)]));
    if (!listed.size && !hashed.size) return null;
    return (unitId) => listed.get(unitId) ?? (hashed.size ? hashed.get(overrideHash(unitSalt, unitId)) ?? null : null);
  }
  if (kind === "experiment") {
    const name = String(spec.experiment ?? "");
    const experiment = experiments.get(name);
    const values = spec.values;
    if (!experiment || values === null || typeof values !== "object" || !Object.keys(values).length) return null;
    return (unitId, attrs) => {
      const answer = experiment.evaluate(unitId, attrs, null);
      if (answer.inExperiment && hasOwn(values, answer.variant)) {
        return flagResult(key, values[answer.variant], "experiment", ruleId, name, answer.variant, answer);
      }
      return null;
    };
  }
  return null; // a rule kind this SDK does not know never matches
}

class CompiledFlag {
  constructor(spec, experiments, audiences) {
    this.key = String(spec.key);
    const fallback = hasOwn(spec, "default") ? spec.default : null;
    this.rules = [];
    if (spec.enabled === false) {
      this.otherwise = flagResult(this.key, fallback, "disabled");
      return;
    }
    this.otherwise = flagResult(this.key, fallback, "default");
    const unitSalt = String(spec.unit_salt || "");
    for (const rule of Array.isArray(spec.rules) ? spec.rules : []) {
      if (rule === null || typeof rule !== "object") continue;
      const compiled = compileFlagRule(this.key, rule, unitSalt, experiments, audiences);
      if (compiled) this.rules.push(compiled);
    }
  }

  evaluate(unitId, attrs) {
    for (const rule of this.rules) {
      const result = rule(unitId, attrs);
      if (result !== null) return result;
    }
    return this.otherwise;
  }
}

/** The compiled `flags` of one document. */
export class FlagEvaluator {
  /**
   * @param {any[]|undefined} specs @param {Map<string, any>} experiments compiled experiments
   * @param {import("./audiences.js").Audiences} audiences
   */
  constructor(specs, experiments, audiences) {
    /** @type {Map<string, CompiledFlag>} */
    this.flags = new Map();
    for (const spec of Array.isArray(specs) ? specs : []) {
      if (spec === null || typeof spec !== "object" || !hasOwn(spec, "key")) continue;
      const flag = new CompiledFlag(spec, experiments, audiences);
      this.flags.set(flag.key, flag);
    }
  }

  /** @param {string} key @returns {boolean} */
  has(key) {
    return this.flags.has(key);
  }

  /** @returns {string[]} */
  get keys() {
    return [...this.flags.keys()];
  }

  /**
   * A key the document lacks answers `defaultValue` with reason `unknown_flag`.
   * @param {string} key @param {string} unitId @param {import("./evaluator.js").Attributes} [attributes]
   * @param {any} [defaultValue] @returns {FlagResult}
   */
  evaluate(key, unitId, attributes = {}, defaultValue = null) {
    const flag = this.flags.get(key);
    if (!flag) return flagResult(key, defaultValue, "unknown_flag");
    return flag.evaluate(String(unitId), attributes ?? {});
  }

  /**
   * @param {string} unitId @param {import("./evaluator.js").Attributes} [attributes] @param {string[]} [keys]
   * @returns {FlagResult[]}
   */
  evaluateMany(unitId, attributes = {}, keys = undefined) {
    return (keys ?? this.keys).map((k) => this.evaluate(k, unitId, attributes));
  }
}
