"""Run the JavaScript SDK's own tests (``node --test``) from pytest, so ``python3 dev.py test``
and CI run them. Node 18+ is required; there is nothing to install (no dependencies)."""
import os
import shutil
import subprocess

import pytest

from .conftest import SDK_JS, VECTORS

NODE = shutil.which("node")


@pytest.fixture
def node():
    if NODE is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("node is required in CI")
        pytest.skip("node is not installed")
    return NODE


def test_js_sdk_unit_and_vector_tests(node):
    result = subprocess.run(
        [node, "--test", "test/vectors.test.js", "test/client.test.js", "test/flags.test.js"],
        cwd=SDK_JS, capture_output=True, text=True, timeout=120,
        env={**os.environ, "VECTORS": str(VECTORS)},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
