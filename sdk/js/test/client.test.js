// Client behaviour against a scripted HTTP server (node:http): ETag refresh, fallbacks,
// batching, retry after failures, the bounded queue. The live round trip against the real
// server is test/live.test.js (run by tests/sdk/test_live.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Client } from "../src/index.js";

const DOC = JSON.parse(readFileSync(fileURLToPath(new URL("../../../assignment/vectors.json", import.meta.url)), "utf8")).document;
const BODY = JSON.stringify(DOC);
const ENROLLED = JSON.parse(readFileSync(fileURLToPath(new URL("../../../assignment/vectors.json", import.meta.url)), "utf8"))
  .cases.filter((c) => c.reason === "assigned");

function fakeServer(handler) {
  const calls = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const call = { method: req.method, url: req.url, headers: req.headers, body };
      calls.push(call);
      handler(call, res, calls);
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    resolve({ calls, url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) });
  }));
}

function config(res, status = 200, body = BODY) {
  res.writeHead(status, { "Content-Type": "application/json", ETag: '"v1"' });
  res.end(status === 304 ? undefined : body);
}

test("fetches at start, then 304 with If-None-Match; assigns without I/O", async () => {
  const srv = await fakeServer((call, res) => (call.headers["if-none-match"] === '"v1"' ? config(res, 304) : config(res)));
  const client = await new Client({ baseUrl: srv.url, apiKey: "k", autoStart: false }).start();
  assert.equal(client.configVersion, "vectors");
  assert.equal(srv.calls[0].headers.authorization, "Api-Key k");
  assert.equal(await client.refresh(), true);
  assert.equal(client.stats.notModified, 1);
  const before = srv.calls.length;
  const c = ENROLLED[0];
  const a = client.assign(c.experiment, c.unit_id, c.attributes);
  assert.equal(a.variant, c.variant);
  assert.equal(srv.calls.length, before, "assign made a request");
  assert.equal(client.queueSize, 1);
  client.assign(c.experiment, c.unit_id, c.attributes);
  assert.equal(client.queueSize, 1, "a repeat exposure is deduplicated");
  await srv.close();
});

test("bad JSON, 500 and an unreachable server keep the last good configuration", async () => {
  let mode = "ok";
  const srv = await fakeServer((call, res) => (mode === "ok" ? config(res) : mode === "bad" ? config(res, 200, "{not json") : config(res, 500, "{}")));
  const client = await new Client({ baseUrl: srv.url, apiKey: "k", autoStart: false }).start();
  mode = "bad";
  assert.equal(await client.refresh(), true);
  mode = "500";
  assert.equal(await client.refresh(), true);
  await srv.close();
  assert.equal(await client.refresh(), true);
  assert.equal(client.stats.refreshErrors, 3);
  assert.equal(client.configVersion, "vectors");
});

test("never had a configuration: defaults (or the stored copy)", async () => {
  const dead = "http://127.0.0.1:9"; // discard port: connection refused
  const client = await new Client({ baseUrl: dead, apiKey: "k", autoStart: false, timeoutMs: 500 }).start();
  const a = client.assign("checkout-button", "u-1", {}, "control");
  assert.deepEqual([a.variant, a.reason, a.inExperiment], ["control", "no_config", false]);
  assert.equal(client.queueSize, 0);
  const store = new Map([["abplatform:config", BODY]]);
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const stored = await new Client({ baseUrl: dead, apiKey: "k", autoStart: false, storage, timeoutMs: 500 }).start();
  assert.equal(stored.configVersion, "vectors");
});

test("exposures go in batches; a 500 keeps the batch for the retry; partial rejection counts", async () => {
  let failExposures = true;
  const srv = await fakeServer((call, res) => {
    if (call.url === "/api/v1/config") return config(res);
    if (failExposures) { res.writeHead(500); return res.end("boom"); }
    const n = JSON.parse(call.body).exposures.length;
    res.writeHead(202, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ accepted: n - 1, rejected: [{ index: 0, errors: { variant: ["x"] } }] }));
  });
  const client = await new Client({ baseUrl: srv.url, apiKey: "k", autoStart: false, batchSize: 3 }).start();
  for (const c of ENROLLED.slice(0, 7)) client.assign(c.experiment, c.unit_id, c.attributes);
  assert.equal(client.queueSize, 7);
  assert.equal(await client.flush(), false);
  assert.equal(client.queueSize, 7, "nothing lost on a 500");
  failExposures = false;
  assert.equal(await client.flush(), true);
  assert.equal(client.queueSize, 0);
  const posts = srv.calls.filter((c) => c.method === "POST");
  assert.deepEqual(posts.slice(1).map((c) => JSON.parse(c.body).exposures.length), [3, 3, 1]);
  const item = JSON.parse(posts[1].body).exposures[0];
  assert.deepEqual(Object.keys(item).sort().filter((k) => k !== "phase"),
    ["attributes", "config_version", "experiment", "timestamp", "unit_id", "variant"]);
  assert.equal(item.config_version, "vectors");
  assert.equal(client.stats.rejected, 3);
  assert.equal(client.stats.sent, 4);
  await srv.close();
});

test("the queue is bounded: the oldest are dropped and counted", async () => {
  const srv = await fakeServer((call, res) => config(res));
  const client = await new Client({ baseUrl: srv.url, apiKey: "k", autoStart: false, maxQueue: 5 }).start();
  for (const c of ENROLLED.slice(0, 8)) client.assign(c.experiment, c.unit_id, c.attributes);
  assert.equal(client.queueSize, 5);
  assert.equal(client.stats.dropped, 3);
  await srv.close();
});

test("a slow server times out instead of hanging", async () => {
  const srv = await fakeServer(() => { /* never answers */ });
  const started = Date.now();
  const client = await new Client({ baseUrl: srv.url, apiKey: "k", autoStart: false, timeoutMs: 300 }).start();
  assert.ok(Date.now() - started < 3000);
  assert.equal(client.ready, false);
  assert.match(client.lastError, /config/);
  srv.close();
});

test("sendBeacon carries the key in a text/plain body", async () => {
  const srv = await fakeServer((call, res) => config(res));
  const client = await new Client({ baseUrl: srv.url, apiKey: "k", autoStart: false }).start();
  for (const c of ENROLLED.slice(0, 2)) client.assign(c.experiment, c.unit_id, c.attributes);
  const sent = [];
  const original = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  Object.defineProperty(globalThis, "navigator", { value: { sendBeacon: (url, blob) => (sent.push([url, blob]), true) }, configurable: true });
  try {
    assert.equal(client.flushWithBeacon(), true);
  } finally {
    if (original) Object.defineProperty(globalThis, "navigator", original); else delete globalThis.navigator;
  }
  assert.equal(sent.length, 1);
  assert.equal(sent[0][0], `${srv.url}/api/v1/exposures`);
  assert.equal(sent[0][1].type, "text/plain;charset=utf-8");
  const body = JSON.parse(await sent[0][1].text());
  assert.equal(body.api_key, "k");
  assert.equal(body.exposures.length, 2);
  assert.equal(client.queueSize, 0);
  await srv.close();
});
