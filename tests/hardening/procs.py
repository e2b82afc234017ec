"""Real services started and stopped by tests and benchmarks: a throwaway Redis, a throwaway
PostgreSQL cluster, gunicorn. Never the shared servers on 5432/6379 the rest of the suite uses.

Every helper is a context manager that cleans up after itself (processes killed by pid, data
directories removed) even when the test fails.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, *, up: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not come {'up' if up else 'down'} within {timeout} s")


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def require_binaries(*names: str) -> dict[str, str]:
    """Paths of the binaries; skip the test without them (fail in CI, like the services)."""
    import pytest

    paths = {name: find_binary(name) for name in names}
    missing = [n for n, p in paths.items() if p is None]
    if missing:
        message = f"needs {', '.join(missing)} on this machine"
        if CI:
            pytest.fail(message + " (CI requires it)", pytrace=False)
        pytest.skip(message)
    return paths  # type: ignore[return-value]


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig) if _own_group(proc) else proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL) if _own_group(proc) else proc.kill()
        proc.wait(5)


def _own_group(proc: subprocess.Popen) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


# --- Redis ----------------------------------------------------------------------------------------

class RedisServer:
    """``redis-server --port P --save ''`` as a child process; ``stop()``/``start()`` at will.

    ``persist=True`` turns on the append-only file (``appendfsync always``), as production should
    run it: what was queued survives a crash."""

    def __init__(self, port: int | None = None, *, persist: bool = False) -> None:
        self.binary = find_binary("redis-server") or "redis-server"
        self.port = port or free_port()
        self.persist = persist
        self.dir = tempfile.mkdtemp(prefix="abp-redis-") if persist else None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        durability = (["--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir]
                      if self.persist else ["--appendonly", "no"])
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *durability, "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for_port(self.port)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL by default: an outage, not a polite shutdown."""
        if self.proc is not None:
            _stop(self.proc, sig)
            self.proc = None
        wait_for_port(self.port, up=False)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- PostgreSQL -------------------------------------------------------------------------------------

class PostgresCluster:
    """A throwaway cluster: ``initdb`` into a temporary directory, trust auth, its own port and
    socket directory. Run as the ``postgres`` user when the tests run as root (initdb refuses root)."""

    def __init__(self, port: int | None = None) -> None:
        paths = {name: find_binary(name) for name in ("initdb", "pg_ctl")}
        self.initdb, self.pg_ctl = paths["initdb"], paths["pg_ctl"]
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="abp-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._user = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        def demote():
            if self._user is not None:
                os.setgid(self._user.pw_gid)
                os.setuid(self._user.pw_uid)

        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        return subprocess.run(list(args), preexec_fn=demote, env=env, cwd=self.dir,
                              capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> None:
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        wait_for_port(self.port)

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash (connections cut, recovery at the next start)."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop", check=False)
        wait_for_port(self.port, up=False)

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def __enter__(self) -> PostgresCluster:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- Django processes -----------------------------------------------------------------------------

def django_env(**overrides: str) -> dict[str, str]:
    """A clean environment for a child Django process (nothing inherited but the basics)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1",
                "SECRET_KEY": "hardening-tests-secret-key-not-for-production-0123456789abcdef",
                "LOG_LEVEL": "WARNING"})
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    out = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def create_key(env: dict[str, str], name: str, scope: str) -> str:
    return manage(env, "create_api_key", name, "--scope", scope).strip().splitlines()[-1]


class Gunicorn:
    """``gunicorn config.wsgi`` on a free loopback port with ``workers`` processes."""

    def __init__(self, env: dict[str, str], *, workers: int = 2, threads: int = 1, port: int | None = None,
                 log: Path | None = None, access_log: Path | None = None) -> None:
        self.env = env
        self.access_log = access_log
        self.access_format: str | None = "%(p)s %(s)s"  # None: gunicorn's default (with the URL)
        self.workers = workers
        self.threads = threads
        self.port = port or free_port()
        self.log = log or Path(tempfile.mkstemp(prefix="abp-gunicorn-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        gunicorn = str(Path(PYTHON).with_name("gunicorn"))
        self._log = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [gunicorn, "config.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--threads", str(self.threads),
             "--timeout", "60", "--graceful-timeout", "10", "--log-level", "warning",
             # Access log (when asked for): by default worker pid and status only.
             *(["--access-logfile", str(self.access_log)] if self.access_log else []),
             *(["--access-logformat", self.access_format] if self.access_log and self.access_format else [])],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url + "/api/v1/config", timeout=2)
            except urllib.error.HTTPError:
                return  # 401: up and answering
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"gunicorn did not answer: {self.log.read_text()[-3000:]}")

    def worker_pids(self) -> set[str]:
        """Pids of the workers that served a request (needs ``access_log`` in the default format)."""
        if not self.access_log or not self.access_log.exists():
            return set()
        return {line.split()[0] for line in self.access_log.read_text().splitlines() if line.strip()}

    def wait_for_workers(self, timeout: float = 60.0) -> None:
        """Send unauthenticated requests (401, not rate-counted) until every worker answered."""
        from concurrent.futures import ThreadPoolExecutor

        def ping(_):
            with contextlib.suppress(OSError):  # HTTPError (the expected 401) is an OSError
                urllib.request.urlopen(self.url + "/api/v1/config", timeout=5)

        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=2 * self.workers) as pool:
            while len(self.worker_pids()) < self.workers:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {len(self.worker_pids())} of {self.workers} workers answered")
                list(pool.map(ping, range(4 * self.workers)))

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGTERM, timeout=20)
            self.proc = None
            self._log.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> Gunicorn:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


SEED_SCRIPT = """
import json
from access.services import create_api_key
from experiments import services
from experiments.models import Metric
keys = {scope: create_api_key(f"hardening-{scope}", scope)[1] for scope in ("client", "analyst", "admin")}
Metric.objects.get_or_create(key="purchase", defaults={"name": "Purchase", "event": "purchase", "kind": "conversion"})
for key in EXPERIMENTS:
    if not services.Experiment.objects.filter(key=key).exists():
        exp = services.create_experiment({
            "key": key, "name": key, "traffic_allocation": 100, "planned_sample_size": 10000,
            "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "green", "weight": 50}],
            "metrics": [{"metric": "purchase", "role": "primary"}],
        })
        services.start_experiment(exp)
print(json.dumps(keys))
"""


def seed(env: dict[str, str], experiments: tuple[str, ...] = ("load-a", "load-b")) -> dict[str, str]:
    """Keys of every scope and running experiments in the database ``env`` points at, in one
    Django start-up (each ``manage.py`` call costs seconds)."""
    import json

    code = f"EXPERIMENTS = {list(experiments)!r}\n" + SEED_SCRIPT
    return json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
