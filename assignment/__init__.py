"""Deterministic variant assignment, its REST API, the SDK configuration document and exposures.

The pure part (``hashing``, ``targeting``, ``evaluator``) imports nothing from Django so it can
be read, copied and ported like an SDK. Everything else adapts it to the platform.
"""
