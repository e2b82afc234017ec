// @abplatform/sdk: assign locally from the server's configuration and report exposures.
export { Evaluator, DocumentError, bucket, overrideHash, variantRanges, rulePasses, compileRule, percentToUnits } from "./evaluator.js";
export { Client } from "./client.js";
export { Audiences, compileAudience } from "./audiences.js";
export { FlagEvaluator } from "./flags.js";
