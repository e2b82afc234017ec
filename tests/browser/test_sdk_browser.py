"""The JavaScript SDK in a real browser (Chromium through Playwright): a static page served
from another origin loads the SDK, gets its variant and its exposure reaches the server,
by fetch and by navigator.sendBeacon on page hide; CORS is exercised for real, including an
origin the server does not allow."""
from __future__ import annotations

import functools
import shutil
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

# The live server of the SDK round-trip tests (imported: this test needs the browser fixtures
# of this folder, which must stay the one Playwright instance of the session).
from tests.sdk.conftest import SDK_JS, sdk_server  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>shop</title></head><body>
<script type="module">
import { Client } from "./sdk/index.js";
const params = new URLSearchParams(location.search);
const client = await new Client({ baseUrl: params.get("server"), apiKey: params.get("key"),
  flushSeconds: Number(params.get("flush") || 2), timeoutMs: 3000 }).start();
const answer = client.assign("sdk-live", params.get("unit"), { country: "CN" }, "control");
document.body.dataset.reason = answer.reason;
document.body.dataset.variant = answer.variant;
if (params.get("mode") === "fetch") {
  await client.flush();
  document.body.dataset.sent = String(client.stats.sent);
}
document.body.dataset.ready = "1";
window.abClient = client;
</script></body></html>"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def static_site(sdk_server, tmp_path_factory):  # noqa: F811
    """The page and the SDK sources on the origin the server allows (another port)."""
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text(PAGE, encoding="utf-8")
    shutil.copytree(SDK_JS / "src", root / "sdk")
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", sdk_server.static_port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield sdk_server.origin
    httpd.shutdown()
    httpd.server_close()


def open_page(page, origin, server, unit, mode, **extra):
    query = "&".join(f"{k}={v}" for k, v in {"server": server.url, "key": server.keys["client"],
                                              "unit": unit, "mode": mode, **extra}.items())
    page.goto(f"{origin}/index.html?{query}")
    page.wait_for_selector("body[data-ready='1']", state="attached")
    return page.evaluate("({...document.body.dataset})")


def wait_for_exposure(server, unit, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.report_counts("sdk-live")  # flushes the worker's buffer
        variant = server.exposures("sdk-live").get(unit)
        if variant:
            return variant
        time.sleep(0.5)
    return None


def test_page_on_another_origin_assigns_and_reports_by_fetch(page, static_site, sdk_server):  # noqa: F811
    data = open_page(page, static_site, sdk_server, "browser-fetch-1", "fetch")
    assert data["reason"] == "assigned" and data["sent"] == "1", data
    assert wait_for_exposure(sdk_server, "browser-fetch-1") == data["variant"]


def test_exposure_sent_by_beacon_on_page_hide(page, static_site, sdk_server):  # noqa: F811
    data = open_page(page, static_site, sdk_server, "browser-beacon-1", "beacon", flush=3600)
    assert data["reason"] == "assigned"
    assert page.evaluate("window.abClient.queueSize") == 1
    page.goto("about:blank")  # pagehide: the queued exposure leaves by navigator.sendBeacon
    assert wait_for_exposure(sdk_server, "browser-beacon-1") == data["variant"]


def test_an_origin_the_server_does_not_allow_gets_nothing(page, static_site, sdk_server):  # noqa: F811
    other = static_site.replace("127.0.0.1", "localhost")
    data = open_page(page, other, sdk_server, "browser-blocked-1", "fetch")
    assert data["reason"] == "no_config" and data["variant"] == "control", data
