#!/usr/bin/env python3
"""Set-up in one command, with nothing but Python 3.11+.

    python3 dev.py serve   # virtualenv, install, migrate, demo login + demo data, serve :8000
    python3 dev.py test    # virtualenv, install with test extras, run the whole test suite

Both are idempotent: the virtualenv is reused and reinstalled only when pyproject.toml changes.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("VENV_DIR", ROOT / ".venv"))
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def run(*args: str | os.PathLike, env: dict | None = None, check: bool = True) -> int:
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=check).returncode


def ensure_venv(extras: str) -> None:
    """Create the virtualenv and install the project (with ``extras``) when anything changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - a readable message on an old Python
        sys.exit("Python 3.11 or newer is needed.")
    if not PY.exists():
        print(f"Creating the virtualenv in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{extras or 'base'}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]" if extras else ".")
    stamp.write_text(digest)


def serve() -> None:
    ensure_venv("")
    manage = [PY, "manage.py"]
    run(*manage, "migrate", "--noinput")
    run(*manage, "collectstatic", "--noinput", "-v0")
    run(*manage, "seed_demo")
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    base = f"http://{host}:{port}"
    print(
        "\n"
        f"  Reports        {base}/reports/\n"
        f"  Admin          {base}/admin/      (login: demo / demo-password)\n"
        f"  API docs       {base}/api/docs/\n"
        f"  OpenAPI schema {base}/api/schema/\n",
        flush=True,
    )
    os.execv(str(PY), [str(PY), "manage.py", "runserver", "--noreload", f"{host}:{port}"])


def test(pytest_args: list[str]) -> None:
    """Run the suite on SQLite (embedded mode), then its database tests on PostgreSQL + Redis."""
    ensure_venv("dev")
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    base_env.setdefault("TEST_REDIS_URL", REDIS_TEST_URL)
    base_env.setdefault("TEST_DATABASE_URL", PG_URL)
    run(PY, "-m", "ruff", "check", ".")
    run(PY, "manage.py", "makemigrations", "--check", "--dry-run", env=base_env)
    # The embedded pass runs on both cores (each xdist worker has its own in-memory SQLite);
    # the production pass stays serial: its tests share one PostgreSQL server and Redis database.
    parallel = [] if any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in pytest_args) else ["-n", "2"]
    status = run(PY, "-m", "pytest", "-m", "not postgres", *parallel, *pytest_args, env=base_env, check=False)
    pg_env = dict(base_env, DATABASE_URL=PG_URL, REDIS_URL=REDIS_TEST_URL, CELERY_TASK_ALWAYS_EAGER="true")
    print("\n=== The same database tests on PostgreSQL and Redis (production mode) ===", flush=True)
    pg_status = _postgres_pass(pg_env, pytest_args)
    status = 0 if status == 5 else status  # 5: nothing selected
    pg_status = 0 if pg_status == 5 else pg_status
    if status or pg_status:
        sys.exit(status or pg_status)
    if ci:
        print("CI: all suites passed.")


def _shards(count: int) -> list[list[str]]:
    """The test files in ``count`` groups of about equal weight (file size as the proxy; the
    slow end-to-end folders weigh more), so the groups finish at about the same time."""
    heavy = {"integration": 6, "hardening": 3, "browser": 6, "sdk": 2, "clients": 4}
    files = sorted(p for p in (ROOT / "tests").rglob("test_*.py") if "node_modules" not in p.parts)
    weighted = sorted(((p.stat().st_size * heavy.get(p.relative_to(ROOT / "tests").parts[0], 1), p) for p in files),
                      reverse=True)
    groups: list[tuple[int, list[str]]] = [(0, []) for _ in range(count)]
    for weight, path in weighted:  # greedy: the heaviest file into the lightest group
        i = min(range(count), key=lambda k: groups[k][0])
        groups[i] = (groups[i][0] + weight, [*groups[i][1], str(path.relative_to(ROOT))])
    return [sorted(g) for _, g in groups if g]


def _postgres_pass(pg_env: dict[str, str], pytest_args: list[str]) -> int:
    """The database tests on PostgreSQL + Redis. Without explicit test paths they run as two
    concurrent shards, each with its own test database and Redis database (the suite's tests
    share no other state), which halves the wall time on a 2-core machine."""
    command = [PY, "-m", "pytest", "-m", "db or postgres"]
    shards = int(os.environ.get("PG_SHARDS", "2"))
    if shards < 2 or any(not a.startswith("-") for a in pytest_args):
        return run(*command, *pytest_args, env=pg_env, check=False)
    redis_base, _, _ = REDIS_TEST_URL.rpartition("/")
    procs = []
    for i, files in enumerate(_shards(shards)):
        redis = f"{redis_base}/{15 - i}"
        env = dict(pg_env, DATABASE_TEST_NAME=f"test_shard{i}", REDIS_URL=redis, TEST_REDIS_URL=redis)
        log = open(ROOT / f".pytest-shard{i}.log", "w")  # noqa: SIM115 - closed below
        print(f"+ shard {i}: {len(files)} files, Redis {redis}", flush=True)
        procs.append((subprocess.Popen([str(a) for a in command] + [*pytest_args, *files], cwd=ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT), log, i))
    status = 0
    for proc, log, i in procs:
        code = proc.wait()
        log.close()
        print(f"\n--- shard {i} (exit {code}) ---", flush=True)
        print((ROOT / f".pytest-shard{i}.log").read_text(errors="replace"), flush=True)
        status = status or (0 if code == 5 else code)
    return status


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("serve", "test"):
        sys.exit(__doc__)
    if sys.argv[1] == "serve":
        serve()
    else:
        test(sys.argv[2:])


if __name__ == "__main__":
    main()
