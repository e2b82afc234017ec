"""The SDKs live outside the Django project: import the Python one from its source tree."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK_PY = ROOT / "sdk" / "python"
SDK_JS = ROOT / "sdk" / "js"
VECTORS = ROOT / "assignment" / "vectors.json"

if str(SDK_PY) not in sys.path:
    sys.path.insert(0, str(SDK_PY))


# --- a live server for the round-trip tests --------------------------------------------------------

import json  # noqa: E402
import tempfile  # noqa: E402
import urllib.request  # noqa: E402

import pytest  # noqa: E402

from tests.hardening.procs import Gunicorn, django_env, free_port, manage, seed  # noqa: E402

LIVE_EXPERIMENTS = ("sdk-live", "sdk-other")


class LiveServer:
    """gunicorn (one worker, embedded mode: SQLite, in-process exposure buffer and eager report
    tasks, so a report refresh in that worker flushes what it buffered) with keys of every
    scope and two running 50/50 experiments."""

    def __init__(self, tmp: str) -> None:
        self.static_port = free_port()
        self.origin = f"http://127.0.0.1:{self.static_port}"
        self.db = f"{tmp}/live.sqlite3"
        self.env = django_env(DATABASE_URL=f"sqlite:///{self.db}", CORS_ALLOWED_ORIGINS=self.origin,
                              API_RATE_LIMIT_ENABLED="false")
        manage(self.env, "migrate", "--noinput")
        self.keys = seed(self.env, LIVE_EXPERIMENTS)
        self.gunicorn = Gunicorn(self.env, workers=1, threads=4)

    @property
    def url(self) -> str:
        return self.gunicorn.url

    def call(self, method: str, path: str, scope: str = "analyst", body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Api-Key {self.keys[scope]}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def report_counts(self, experiment: str) -> dict[str, int]:
        """Exposure counts per variant of a freshly computed report (through the API)."""
        self.call("POST", f"/api/v1/experiments/{experiment}/results/refresh")
        payload = self.call("GET", f"/api/v1/experiments/{experiment}/results")
        return exposure_counts(payload)

    def exposures(self, experiment: str) -> dict[str, str]:
        """unit -> variant straight from the database file (after a report flushed the buffer)."""
        import sqlite3

        with sqlite3.connect(self.db) as db:
            rows = db.execute(
                "SELECT e.unit_id, v.key FROM assignment_exposure e JOIN experiments_variant v ON v.id = e.variant_id "
                "JOIN experiments_experiment x ON x.id = e.experiment_id WHERE x.key = ?", (experiment,)).fetchall()
        return dict(rows)


def exposure_counts(payload: dict) -> dict[str, int]:
    for key in ("exposure_counts", "counts"):
        if isinstance(payload.get(key), dict):
            return {k: int(v) for k, v in payload[key].items()}
    for key in ("variants", "srm"):
        block = payload.get(key)
        if isinstance(block, dict) and isinstance(block.get("counts"), dict):
            return {k: int(v) for k, v in block["counts"].items()}
    raise AssertionError(f"no exposure counts in the report: {sorted(payload)}")


@pytest.fixture(scope="session")
def sdk_server():
    with tempfile.TemporaryDirectory(prefix="abp-sdk-live-") as tmp:
        server = LiveServer(tmp)
        server.gunicorn.start()
        try:
            yield server
        finally:
            server.gunicorn.stop()
