// Audiences: named sets of targeting conditions (docs/assignment.md section 5a).
// {match: "all" | "any", conditions: [rule, ...]}: every / at least one condition passes (the
// same compiled rules as experiment targeting); no conditions: everyone; undefined: nobody.

import { compileRule } from "./evaluator.js";

/**
 * @typedef {{match: ("all"|"any"), conditions: import("./evaluator.js").Rule[]}} Audience
 * @typedef {(attrs: import("./evaluator.js").Attributes) => (string|null)} Check
 */

const everyone = () => null;
const nobody = (key) => () => `audience ${JSON.stringify(key)} is not defined`;

/**
 * One audience -> a check returning null for a member, else why not.
 * @param {string} key @param {Audience} spec @returns {Check}
 */
export function compileAudience(key, spec) {
  if (spec === null || typeof spec !== "object" || Array.isArray(spec)) return nobody(key);
  const conditions = Array.isArray(spec.conditions) ? spec.conditions.filter((c) => c !== null && typeof c === "object") : [];
  if (!conditions.length) return everyone;
  const checks = conditions.map(compileRule);
  const prefix = `not in audience ${JSON.stringify(key)}: `;
  if (spec.match === "any") {
    return (attrs) => {
      for (const check of checks) if (check(attrs) === null) return null;
      return `${prefix}no condition passes`;
    };
  }
  return (attrs) => {
    for (const check of checks) {
      const failure = check(attrs);
      if (failure !== null) return prefix + failure;
    }
    return null;
  };
}

/** The compiled `audiences` of one document. */
export class Audiences {
  /** @param {Object<string, Audience>|null|undefined} specs */
  constructor(specs) {
    /** @type {Map<string, Check>} */
    this.compiled = new Map();
    if (specs !== null && typeof specs === "object" && !Array.isArray(specs)) {
      for (const [key, spec] of Object.entries(specs)) this.compiled.set(key, compileAudience(key, spec));
    }
  }

  /**
   * Checks of every listed audience (those admitting everyone are skipped).
   * @param {string[]|null|undefined} keys @returns {Check[]}
   */
  checks(keys) {
    if (!Array.isArray(keys)) return [];
    return keys.map((k) => this.compiled.get(String(k)) ?? nobody(String(k))).filter((c) => c !== everyone);
  }

  /** @param {string} key @param {import("./evaluator.js").Attributes} attributes @returns {boolean} */
  isMember(key, attributes) {
    return this.checks([key]).every((check) => check(attributes) === null);
  }
}
