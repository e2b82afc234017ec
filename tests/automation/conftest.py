from __future__ import annotations

import pytest

from tests.automation.receiver import Receiver


@pytest.fixture
def receiver():
    """``receiver(codes)``: a local HTTP server answering ``codes`` in turn, then 200."""
    started: list[Receiver] = []

    def start(codes: list[int] | None = None) -> Receiver:
        r = Receiver(codes).__enter__()
        started.append(r)
        return r

    yield start
    for r in started:
        r.__exit__()
