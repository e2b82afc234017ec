"""The long API fuzzing run: every operation of the OpenAPI schema with many more examples than
CI uses (tests/fuzz/ with a bigger budget). Prints how many requests ran and what they got.

    .venv/bin/python bench/fuzz_long.py [--examples 500] [--seed N] [--postgres URL] [-- pytest args]

``--seed`` defaults to a new random seed (printed, so a failure can be replayed with it);
``--postgres`` runs against PostgreSQL (``postgres://postgres@127.0.0.1:5432/fuzz``) instead of
SQLite, which catches what only PostgreSQL refuses (NUL characters, non-finite JSON numbers).
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=500, help="Hypothesis examples per operation and mode")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--postgres", default=None, help="a DATABASE_URL to fuzz against PostgreSQL")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(FUZZ_MAX_EXAMPLES=str(args.examples), FUZZ_SEED=str(seed))
    if args.postgres:
        env.update(DATABASE_URL=args.postgres, CELERY_TASK_ALWAYS_EAGER="true")
    print(f"fuzz_long: {args.examples} examples per operation and mode, seed {seed}", flush=True)
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider", *args.pytest_args]
    status = subprocess.run(command, cwd=ROOT, env=env).returncode
    print(f"fuzz_long: {time.monotonic() - started:.0f} s, pytest exit status {status} "
          f"(replay with --seed {seed} --examples {args.examples})")
    return status


if __name__ == "__main__":
    sys.exit(main())
