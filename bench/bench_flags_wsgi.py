"""WSGI entry for bench/bench_flags.py: bench/bench_wsgi.py's app, with the bench flag added to
the configuration document when the database defines no flags (branches where flag definitions
are not stored yet). Never used by the application."""
from assignment import runtime
from bench.bench_wsgi import application  # noqa: F401 (the WSGI entry point)

_build_document = runtime.build_document


def _with_bench_flags(*args, **kwargs):
    from bench.bench_flags import AUDIENCES, FLAGS

    document, ids = _build_document(*args, **kwargs)
    if not document.get("flags"):
        document = {**document, "audiences": {**AUDIENCES, **(document.get("audiences") or {})},
                    "flags": FLAGS, "version": document["version"] + "-flags"}
    return document, ids


runtime.build_document = _with_bench_flags
