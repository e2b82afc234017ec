// Round trip against a live server; run by tests/sdk/test_live.py, which starts the server and
// sets ABPLATFORM_URL / ABPLATFORM_KEY (skipped otherwise). Writes unit -> variant to
// ABPLATFORM_OUT for the Python side to compare with what the server recorded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { Client } from "../src/index.js";

const url = process.env.ABPLATFORM_URL;
const key = process.env.ABPLATFORM_KEY;

test("assign locally, exposures reach the server", { skip: !url && "no live server" }, async () => {
  const client = await new Client({ baseUrl: url, apiKey: key, flushSeconds: 0.2, batchSize: 50 }).start();
  assert.ok(client.ready, client.lastError);
  const answers = {};
  for (let i = 0; i < 200; i++) {
    const a = client.assign("sdk-live", `js-${i}`, { country: "CN" });
    assert.equal(a.reason, "assigned");
    answers[`js-${i}`] = a.variant;
  }
  assert.equal(client.assign("nope", "js-0", {}, "off").variant, "off");
  assert.equal(await client.refresh(), true);
  assert.equal(client.stats.notModified, 1, "ETag round trip");
  assert.equal(await client.close(), true, client.lastError);
  assert.equal(client.stats.sent, 200, JSON.stringify(client.stats));
  assert.equal(client.stats.rejected, 0);
  if (process.env.ABPLATFORM_OUT) writeFileSync(process.env.ABPLATFORM_OUT, JSON.stringify(answers));
});
