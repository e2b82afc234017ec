"""Headless Chromium for the browser tests: Debian's package, never a downloaded browser.

Missing Chromium skips the tests on a laptop but FAILS them in CI (``CI=true``), like the other
service-dependent tests.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import CI

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium():
    """A launched headless Chromium (Playwright driving the system binary)."""
    path = chromium_path()
    if path is None:
        message = "Chromium is not installed (apt-get install -y chromium)"
        if CI:
            pytest.fail(f"{message}; CI requires it (.ci/run installs it)", pytrace=False)
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        if CI:
            pytest.fail("playwright is not installed", pytrace=False)
        pytest.skip("playwright is not installed")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # see _allow_orm_next_to_playwright
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
    finally:
        manager.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture(autouse=True)
def _allow_orm_next_to_playwright(monkeypatch):
    """Playwright's sync API runs an event loop in this thread; Django's ORM refuses to run next to
    one unless told it is safe (it is: the loop only drives the browser)."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
