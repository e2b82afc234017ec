// The client: a configuration kept fresh with ETag polling and exposures sent in batches.
// `assign` is synchronous and never touches the network. Browsers and Node 18+ (global fetch).

import { Evaluator } from "./evaluator.js";
import { flagResult } from "./flags.js";

/** The server's limit per POST /api/v1/exposures. */
export const MAX_BATCH = 1000;

/**
 * @typedef {import("./evaluator.js").Assignment} Assignment
 * @typedef {import("./evaluator.js").Attributes} Attributes
 * @typedef {{getItem(key: string): (string|null), setItem(key: string, value: string): void}} Storage
 * @typedef {Object} ClientOptions
 * @property {string} baseUrl        e.g. "https://ab.example.com"
 * @property {string} apiKey         a key with the `client` scope
 * @property {number} [refreshSeconds=30]  configuration polling interval
 * @property {number} [flushSeconds=2]     exposure flush interval
 * @property {number} [batchSize=100]      exposures per POST (at most 1000); a full batch flushes at once
 * @property {number} [maxQueue=5000]      queued exposures kept; beyond, the oldest are dropped (counted)
 * @property {number} [timeoutMs=5000]     per request
 * @property {number} [maxBackoffSeconds=60]
 * @property {Storage|null} [storage]      where the last good configuration is kept (e.g. localStorage)
 * @property {string} [storageKey="abplatform:config"]
 * @property {any} [bootstrap]             a configuration document to start from (server-side rendering)
 * @property {typeof fetch} [fetch]        defaults to the global fetch
 * @property {boolean} [logExposures=true]
 * @property {boolean} [autoStart=true]    poll and flush in the background (timers)
 */

/** A queued exposure as POST /api/v1/exposures takes it (the ISO time is built off the hot path). */
function wire({ ts, ...rest }) {
  return { ...rest, timestamp: new Date(ts).toISOString() };
}

/** A FIFO with O(1) push and drop-oldest (an array and a moving head, compacted now and then). */
class Fifo {
  constructor() {
    this.items = [];
    this.head = 0;
  }
  get length() {
    return this.items.length - this.head;
  }
  push(item) {
    this.items.push(item);
  }
  dropOldest() {
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) this._compact();
  }
  /** Remove and return up to n of the oldest. */
  take(n) {
    const out = this.items.slice(this.head, this.head + n);
    this.head += out.length;
    this._compact();
    return out;
  }
  peek(n) {
    return this.items.slice(this.head, this.head + n);
  }
  /** Put items back in front (they are older than everything queued). */
  putBack(items) {
    this._compact();
    this.items = items.concat(this.items);
  }
  _compact() {
    if (this.head) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

export class Client {
  /** @param {ClientOptions} options */
  constructor(options) {
    const o = options ?? {};
    if (!o.baseUrl || !o.apiKey) throw new TypeError("baseUrl and apiKey are required");
    this.baseUrl = String(o.baseUrl).replace(/\/+$/, "");
    this.apiKey = o.apiKey;
    this.refreshSeconds = o.refreshSeconds ?? 30;
    this.flushSeconds = o.flushSeconds ?? 2;
    this.batchSize = Math.max(1, Math.min(o.batchSize ?? 100, MAX_BATCH));
    this.maxQueue = Math.max(1, o.maxQueue ?? 5000);
    this.timeoutMs = o.timeoutMs ?? 5000;
    this.maxBackoffSeconds = o.maxBackoffSeconds ?? 60;
    this.storage = o.storage ?? null;
    this.storageKey = o.storageKey ?? "abplatform:config";
    this.logExposures = o.logExposures ?? true;
    this.autoStart = o.autoStart ?? true;
    this._fetch = o.fetch ?? globalThis.fetch?.bind(globalThis);
    /** @type {Evaluator|null} */
    this.evaluator = null;
    this._etag = null;
    /** @type {object[]} */
    this._queue = new Fifo();
    this._seen = new Set();
    this._backoff = 0;
    this._flushing = null;
    this._timers = [];
    this._closed = false;
    this.stats = { queued: 0, sent: 0, rejected: 0, dropped: 0, deduplicated: 0, flushErrors: 0,
      refreshes: 0, notModified: 0, refreshErrors: 0, beacons: 0 };
    /** @type {string|null} */
    this.lastError = null;
    if (o.bootstrap) this._use(o.bootstrap, null);
    this._onHide = () => {
      if (typeof document === "undefined" || document.visibilityState === "hidden") this.flushWithBeacon();
    };
  }

  /**
   * Fetch the configuration (else the stored copy), then poll and flush in the background.
   * Resolves once a configuration is loaded or it is known that none can be.
   * @returns {Promise<Client>}
   */
  async start() {
    if (!(await this.refresh())) this._loadStored();
    if (this.autoStart && !this._closed) {
      this._schedule("refresh", this.refreshSeconds);
      this._schedule("flush", this.flushSeconds);
      if (typeof addEventListener === "function" && typeof document !== "undefined") {
        addEventListener("pagehide", this._onHide);
        document.addEventListener("visibilitychange", this._onHide);
      }
    }
    return this;
  }

  _schedule(kind, seconds) {
    if (this._closed) return;
    const jitter = kind === "refresh" ? 0.9 + Math.random() * 0.2 : 1;
    const timer = setTimeout(async () => {
      this._timers = this._timers.filter((t) => t !== timer);
      if (kind === "refresh") {
        await this.refresh();
        this._schedule("refresh", this.refreshSeconds);
      } else {
        const ok = await this.flush();
        this._backoff = ok ? 0 : Math.min(this.maxBackoffSeconds, Math.max(0.5, this._backoff * 2));
        this._schedule("flush", ok ? this.flushSeconds : this._backoff * (0.8 + Math.random() * 0.4));
      }
    }, seconds * 1000 * jitter);
    timer?.unref?.(); // never keeps Node alive
    this._timers.push(timer);
  }

  /** @returns {string|null} the version of the configuration in use */
  get configVersion() {
    return this.evaluator ? this.evaluator.version : null;
  }

  get ready() {
    return this.evaluator !== null;
  }

  get queueSize() {
    return this._queue.length;
  }

  /**
   * The variant of `experiment` for `unitId` (synchronous, no I/O); queues an exposure when
   * the unit is enrolled. Without a configuration the answer is `defaultVariant` (`no_config`).
   * @param {string} experiment @param {string} unitId @param {Attributes} [attributes]
   * @param {string|null} [defaultVariant]
   * @returns {Assignment}
   */
  assign(experiment, unitId, attributes = {}, defaultVariant = null) {
    const evaluator = this.evaluator;
    if (!evaluator) {
      return { experiment, variant: defaultVariant, inExperiment: false, reason: "no_config",
        detail: "no configuration loaded", payload: {}, phase: null };
    }
    const answer = evaluator.evaluate(experiment, unitId, attributes);
    if (answer.reason === "unknown_experiment" && defaultVariant !== null) answer.variant = defaultVariant;
    if (answer.reason === "assigned" && this.logExposures) this._expose(answer, unitId, attributes, evaluator.version);
    return answer;
  }

  /**
   * Answers for every running experiment (exposures queued for the enrolled ones).
   * @param {string} unitId @param {Attributes} [attributes] @returns {Assignment[]}
   */
  assignAll(unitId, attributes = {}) {
    const evaluator = this.evaluator;
    if (!evaluator) return [];
    const answers = evaluator.evaluateMany(unitId, attributes);
    if (this.logExposures) {
      for (const a of answers) if (a.reason === "assigned") this._expose(a, unitId, attributes, evaluator.version);
    }
    return answers;
  }

  /**
   * The value of flag `key` for `unitId` (synchronous, no I/O); when an experiment rule decides,
   * its exposure is queued exactly as `assign` would. Without a configuration, or for a flag it
   * lacks, the value is `defaultValue` (reason `no_config` / `unknown_flag`).
   * @param {string} key @param {string} unitId @param {Attributes} [attributes] @param {any} [defaultValue]
   * @returns {import("./flags.js").FlagResult}
   */
  getFlag(key, unitId, attributes = {}, defaultValue = null) {
    const evaluator = this.evaluator;
    if (!evaluator) return flagResult(key, defaultValue, "no_config");
    const result = evaluator.flags.evaluate(key, unitId, attributes, defaultValue);
    this._flagExposure(result, unitId, attributes, evaluator.version);
    return result;
  }

  /**
   * Every flag of the configuration (or `keys`) for `unitId`, by key.
   * @param {string} unitId @param {Attributes} [attributes] @param {string[]} [keys]
   * @returns {Object<string, import("./flags.js").FlagResult>}
   */
  getFlags(unitId, attributes = {}, keys = undefined) {
    const evaluator = this.evaluator;
    const out = {};
    if (!evaluator) {
      for (const key of keys ?? []) out[key] = flagResult(key, null, "no_config");
      return out;
    }
    for (const result of evaluator.flags.evaluateMany(unitId, attributes, keys)) {
      this._flagExposure(result, unitId, attributes, evaluator.version);
      out[result.key] = result;
    }
    return out;
  }

  _flagExposure(result, unitId, attributes, version) {
    const answer = result.assignment;
    if (answer && answer.reason === "assigned" && this.logExposures) this._expose(answer, unitId, attributes, version);
  }

  _expose(answer, unitId, attributes, version) {
    // The server keeps the first exposure per (experiment, phase, unit): repeats are noise.
    const seenKey = `${answer.experiment}\u0000${unitId}`;
    if (this._seen.has(seenKey)) {
      this.stats.deduplicated++;
      return;
    }
    if (this._seen.size >= 50000) this._seen.clear();
    this._seen.add(seenKey);
    const item = { experiment: answer.experiment, variant: answer.variant, unit_id: String(unitId),
      ts: Date.now(), attributes: attributes ? { ...attributes } : {}, config_version: version };
    if (answer.phase !== null && answer.phase !== undefined) item.phase = answer.phase;
    if (this._queue.length >= this.maxQueue) {
      this._queue.dropOldest();
      this.stats.dropped++;
    }
    this._queue.push(item);
    this.stats.queued++;
    if (this._queue.length >= this.batchSize && this._backoff === 0 && this.autoStart && !this._flushing) {
      queueMicrotask(() => this.flush());
    }
  }

  async _request(method, path, body, headers) {
    const controller = typeof AbortController === "function" ? new AbortController() : null;
    const timer = controller ? setTimeout(() => controller.abort(), this.timeoutMs) : null;
    try {
      const response = await this._fetch(this.baseUrl + path, {
        method, body, signal: controller?.signal,
        headers: { Authorization: `Api-Key ${this.apiKey}`, Accept: "application/json", ...headers },
      });
      const text = response.status === 304 ? "" : await response.text();
      return { status: response.status, headers: response.headers, text };
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  _use(document, etag) {
    const evaluator = new Evaluator(document);
    // A new version (a new phase, a new salt) may need a unit's exposure again.
    if (!this.evaluator || this.evaluator.version !== evaluator.version) this._seen.clear();
    this.evaluator = evaluator;
    this._etag = etag;
    return evaluator;
  }

  /**
   * Fetch the configuration now (If-None-Match). Keeps the last good one on any failure.
   * @returns {Promise<boolean>} true when a usable configuration is loaded
   */
  async refresh() {
    try {
      const headers = this._etag ? { "If-None-Match": this._etag } : {};
      const response = await this._request("GET", "/api/v1/config", undefined, headers);
      if (response.status === 304 && this.evaluator) {
        this.stats.notModified++;
        return true;
      }
      if (response.status !== 200) throw new Error(`GET /api/v1/config answered ${response.status}`);
      this._use(JSON.parse(response.text), response.headers.get("ETag"));
      this.stats.refreshes++;
      if (this.storage) {
        try {
          this.storage.setItem(this.storageKey, response.text);
        } catch { /* quota or privacy mode: the in-memory copy still serves */ }
      }
      return true;
    } catch (error) {
      this.stats.refreshErrors++;
      this.lastError = `config: ${error?.message ?? error}`;
      return this.evaluator !== null;
    }
  }

  _loadStored() {
    if (!this.storage || this.evaluator) return;
    try {
      const text = this.storage.getItem(this.storageKey);
      if (text) this._use(JSON.parse(text), null);
    } catch (error) {
      this.lastError = `stored config: ${error?.message ?? error}`;
    }
  }

  /**
   * Send what is queued, batch by batch. A failed batch goes back to the front of the queue
   * (retried with backoff by the background flush).
   * @returns {Promise<boolean>} false if a batch could not be delivered
   */
  async flush() {
    if (this._flushing) return this._flushing;
    this._flushing = (async () => {
      try {
        while (this._queue.length) {
          if (!(await this._flushOnce())) return false;
        }
        return true;
      } finally {
        this._flushing = null;
      }
    })();
    return this._flushing;
  }

  async _flushOnce() {
    const batch = this._queue.take(this.batchSize);
    if (!batch.length) return true;
    let response;
    try {
      response = await this._request("POST", "/api/v1/exposures", JSON.stringify({ exposures: batch.map(wire) }),
        { "Content-Type": "application/json" });
    } catch (error) {
      return this._failed(batch, `exposures: ${error?.message ?? error}`);
    }
    if (response.status >= 500 || response.status === 429) return this._failed(batch, `exposures: HTTP ${response.status}`);
    if (response.status >= 400) {
      // Refused as a whole (bad key, bad body): retrying cannot help.
      this.stats.rejected += batch.length;
      this.lastError = `exposures: HTTP ${response.status} ${response.text.slice(0, 200)}`;
      return true;
    }
    let rejected = 0;
    try {
      rejected = (JSON.parse(response.text).rejected ?? []).length;
    } catch { /* a 2xx without a readable body: count the batch as sent */ }
    this.stats.rejected += rejected;
    this.stats.sent += batch.length - rejected;
    return true;
  }

  _failed(batch, error) {
    this.stats.flushErrors++;
    this.lastError = error;
    const room = this.maxQueue - this._queue.length;
    const keep = room > 0 ? batch.slice(-room) : [];
    this.stats.dropped += batch.length - keep.length;
    this._queue.putBack(keep);
    return false;
  }

  /**
   * Hand everything queued to `navigator.sendBeacon` (page hide: the page may never run
   * again). Beacons cannot carry headers, so the key travels in the body, and the body is
   * sent as text/plain, which needs no CORS preflight. Falls back to flush() elsewhere.
   * @returns {boolean} true when every batch was handed over
   */
  flushWithBeacon() {
    const nav = typeof navigator !== "undefined" ? navigator : null;
    if (!nav || typeof nav.sendBeacon !== "function") {
      this.flush();
      return false;
    }
    while (this._queue.length) {
      const batch = this._queue.peek(this.batchSize);
      const body = JSON.stringify({ api_key: this.apiKey, exposures: batch.map(wire) });
      const blob = new Blob([body], { type: "text/plain;charset=UTF-8" });
      if (!nav.sendBeacon(`${this.baseUrl}/api/v1/exposures`, blob)) return false;
      this._queue.take(batch.length);
      this.stats.beacons++;
    }
    return true;
  }

  /** Stop polling and send what is queued. @returns {Promise<boolean>} */
  async close() {
    this._closed = true;
    for (const t of this._timers) clearTimeout(t);
    this._timers = [];
    if (typeof removeEventListener === "function" && typeof document !== "undefined") {
      removeEventListener("pagehide", this._onHide);
      document.removeEventListener("visibilitychange", this._onHide);
    }
    return this.flush();
  }
}
