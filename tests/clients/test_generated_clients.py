"""Clients generated from the OpenAPI schema work, as a team without an SDK would use them.

The schema (``manage.py spectacular``) goes through ``openapi-python-client`` (the ``dev`` extra)
and ``openapi-typescript`` (npm, pinned in this folder's package-lock.json and installed with
``npm ci``), both into temporary directories and both with zero warnings. Operations and
components are discovered from the schema, so endpoints added later are covered without editing
this file. Then the README's API tour runs through the generated Python client against a live
server, and every response must parse into its model with no field left undocumented.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from tests.conftest import CI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
PACKAGE = "abp_generated_client"
METHODS = ("get", "put", "post", "patch", "delete")


def _need(binary: str) -> str:
    found = shutil.which(binary)
    if found:
        return found
    if CI:
        pytest.fail(f"needs {binary} (CI requires it)", pytrace=False)
    pytest.skip(f"needs {binary} on this machine")


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(path, method, op) for path, item in schema["paths"].items()
            for method, op in item.items() if method in METHODS]


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory) -> Path:
    """The schema exactly as the README's command writes it (validated, warnings are errors)."""
    out = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn")
    return out


@pytest.fixture(scope="module")
def schema(schema_file) -> dict:
    return yaml.safe_load(schema_file.read_text())


@pytest.fixture(scope="module")
def python_client(schema_file, tmp_path_factory):
    """``openapi-python-client generate`` into a temporary package, imported."""
    generator = BIN / "openapi-python-client"
    if not generator.exists():
        pytest.fail("openapi-python-client is missing: pip install -e '.[dev]'", pytrace=False)
    parent = tmp_path_factory.mktemp("python-client")
    target = parent / PACKAGE
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # its ruff post-hooks
    run = subprocess.run(
        [str(generator), "generate", "--path", str(schema_file), "--output-path", str(target), "--meta", "none"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    output = (run.stdout + run.stderr).strip()
    assert run.returncode == 0, output
    # Anything but the progress line is a warning (duplicate models, unparsable schemas, ...).
    noise = [line for line in output.splitlines() if line.strip() and line.strip() != f"Generating {target}"]
    assert noise == [], "openapi-python-client warned:\n" + output
    sys.path.insert(0, str(parent))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(parent))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _operation_modules(client_package) -> dict[str, object]:
    api = importlib.import_module(f"{PACKAGE}.api")
    found = {}
    for info in pkgutil.walk_packages(api.__path__, prefix=f"{PACKAGE}.api."):
        if not info.ispkg:
            found[info.name.rsplit(".", 1)[1]] = importlib.import_module(info.name)
    return found


def _response_model(response: dict) -> str | None:
    """The component a JSON success response is documented as (directly or as a list of)."""
    media = (response.get("content") or {}).get("application/json") or {}
    node = media.get("schema") or {}
    node = node.get("items", node) if node.get("type") == "array" else node
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[1] if ref else None


def test_component_names_are_unique_and_meaningful(schema):
    names = list(schema["components"]["schemas"])
    # ``_Foo`` (from ``_FooSerializer``) becomes ``Foo`` in generated code, clashing with a real Foo:
    # name the serializer ``SomethingFooSerializer`` or use extend_schema_serializer(component_name=...).
    assert [n for n in names if not n[:1].isupper() or not n.isidentifier()] == []
    # Case-insensitive clashes become the same Python module / class name.
    lowered = [n.lower() for n in names]
    assert sorted({n for n in lowered if lowered.count(n) > 1}) == []


def test_python_client_has_a_parsed_model_for_every_operation(schema, python_client):
    models = importlib.import_module(f"{PACKAGE}.models")
    missing_models = sorted(set(schema["components"]["schemas"]) - set(models.__all__))
    assert missing_models == [], "components the generator dropped"
    modules = _operation_modules(python_client)
    problems = []
    for path, method, op in _operations(schema):
        module = modules.get(op["operationId"])
        if module is None or not hasattr(module, "sync_detailed"):
            problems.append(f"{method.upper()} {path}: no generated function {op['operationId']}")
            continue
        source = inspect.getsource(module)
        for status, response in op["responses"].items():
            model = _response_model(response)
            if status.startswith("2") and model and f"{model}.from_dict(" not in source:
                problems.append(f"{method.upper()} {path}: {status} not parsed into {model}")
    assert problems == []


def test_typescript_types_generate_without_warnings_and_compile(schema, schema_file, tmp_path):
    npm = _need("npm")
    _need("node")
    tools = HERE / "node_modules" / ".bin"
    installed = HERE / "node_modules" / ".package-lock.json"
    lock = HERE / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        run = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True,
                             text=True, timeout=600)
        if run.returncode:  # e.g. no registry on a laptop offline; CI (.ci/run) installs it first
            message = "npm ci failed in tests/clients:\n" + run.stdout + run.stderr
            pytest.fail(message, pytrace=False) if CI else pytest.skip(message)
    out = tmp_path / "api.d.ts"
    run = subprocess.run([str(tools / "openapi-typescript"), str(schema_file), "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    noise = [line for line in output.splitlines()
             if line.strip() and not line.startswith(("✨ openapi-typescript", "🚀 "))]
    assert noise == [], "openapi-typescript warned:\n" + output
    # Every component and operation is a type a TypeScript client can name (strict mode).
    lines = ['import type { components, paths } from "./api";']
    for i, name in enumerate(schema["components"]["schemas"]):
        lines.append(f'export type C{i} = components["schemas"]["{name}"];')
    for i, (path, method, _) in enumerate(_operations(schema)):
        lines.append(f'export type P{i} = NonNullable<paths["{path}"]["{method}"]>["responses"];')
    (tmp_path / "check.ts").write_text("\n".join(lines) + "\n")
    run = subprocess.run([str(tools / "tsc"), "--noEmit", "--strict", "--skipLibCheck", "check.ts"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


# --- the README's tour through the generated Python client ----------------------------------------

def _fully_parsed(value, where: str = "response") -> list[str]:
    """Fields the server sent that the model did not declare (they land in additional_properties).
    Models without declared fields are free-form maps and may hold anything."""
    import attrs

    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _fully_parsed(item, f"{where}[{i}]")]
    if not attrs.has(type(value)):
        return []
    declared = [f.name for f in attrs.fields(type(value)) if f.name != "additional_properties"]
    extra = getattr(value, "additional_properties", {}) or {}
    problems = [f"{where}.{k} (in {type(value).__name__})" for k in extra] if declared else []
    for name in declared:
        problems += _fully_parsed(getattr(value, name), f"{where}.{name}")
    for key, item in (extra.items() if not declared else ()):
        problems += _fully_parsed(item, f"{where}[{key!r}]")
    return problems


def _parsed(response, model, status: int = 200):
    """The response has the expected status and parsed into ``model``, every field declared."""
    assert response.status_code == status, response.content[:500]
    parsed = response.parsed
    items = parsed if isinstance(parsed, list) else [parsed]
    assert all(isinstance(item, model) for item in items), (type(parsed), response.content[:500])
    undeclared = _fully_parsed(parsed)
    assert undeclared == [], "fields the schema does not declare (add them to the serializer):\n" + "\n".join(undeclared)
    return parsed


@pytest.fixture
def tour_data(transactional_db):
    from access.services import create_api_key
    from experiments import services
    from experiments.models import Metric

    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    experiment = services.create_experiment({
        "key": "checkout-button", "name": "Checkout button", "traffic_allocation": 100, "planned_sample_size": 1000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "green", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    })
    services.start_experiment(experiment)
    return create_api_key("tour", "admin")[1]


def test_readme_tour_through_the_generated_python_client(python_client, tour_data, live_server):
    from importlib import import_module

    def op(name):
        return _operation_modules(python_client)[name]

    m = import_module(f"{PACKAGE}.models")
    client = python_client.AuthenticatedClient(base_url=live_server.url, token=tour_data, prefix="Api-Key",
                                               raise_on_unexpected_status=True)
    with client:
        # Which variant does u-123 get?
        body = m.AssignRequest(unit_id="u-123",
                               attributes=m.AssignRequestAttributes.from_dict({"country": "CN", "platform": "ios"}))
        assigned = _parsed(op("assignments_create").sync_detailed(client=client, body=body), m.AssignmentResponse)
        assert [a.experiment for a in assigned.assignments] == ["checkout-button"]
        single = op("experiment_assignment_retrieve").sync_detailed(key="checkout-button", client=client,
                                                                    unit_id="u-123")
        assert _parsed(single, m.SingleAssignmentResponse).variant == assigned.assignments[0].variant

        # Local assignment from the config document, ETag-cached.
        config = op("config_retrieve").sync_detailed(client=client)
        document = _parsed(config, m.ConfigDocument)
        assert [e.key for e in document.experiments] == ["checkout-button"]
        assert all(isinstance(v, m.ConfigVariant) for v in document.experiments[0].variants)
        again = op("config_retrieve").sync_detailed(client=client, if_none_match=config.headers["ETag"])
        assert again.status_code == 304

        # What did u-123 do afterwards? (and enough other units that every statistic is computed)
        units = ["u-123"] + [f"u-{i}" for i in range(40)]
        for unit in units[1:]:
            op("assignments_create").sync_detailed(client=client, body=m.AssignRequest(unit_id=unit))
        when = datetime.now(UTC)
        events = [m.EventRequest(event_id=f"e-{unit}", unit_id=unit, event="purchase", value=42.5, timestamp=when)
                  for unit in units[::2]]
        sent = op("events_create").sync_detailed(client=client, body=m.EventBatchRequest(events=events))
        assert sent.status_code in (200, 201, 202), sent.content
        _parsed(sent, m.EventBatchResult, sent.status_code)

        # Recompute, follow the task, read the results (JSON and CSV).
        refresh = _parsed(op("experiment_results_refresh").sync_detailed(key="checkout-button", client=client),
                          m.Refresh, 202)
        task = _parsed(op("report_task_status").sync_detailed(task_id=refresh.task_id, client=client), m.TaskStatus)
        assert task.task_id == refresh.task_id
        results = _parsed(op("experiment_results").sync_detailed(key="checkout-button", client=client), m.Results)
        assert results.experiment == "checkout-button"
        assert [v.status for v in results.metrics[0].variants] == ["ok", "ok"]  # every block present
        csv = op("experiment_results_csv").sync_detailed(key="checkout-button", client=client)
        assert csv.status_code == 200 and csv.content.startswith(b"experiment,computed_at,"), csv.content[:200]

        # Who changed what; definitions.
        history = op("v1_experiments_history_list").sync_detailed(key="checkout-button", client=client)
        assert _parsed(history, m.ExperimentHistoryEntry)
        _parsed(op("v1_experiments_retrieve").sync_detailed(key="checkout-button", client=client), m.Experiment)
        _parsed(op("v1_experiments_list").sync_detailed(client=client), m.Experiment)
        _parsed(op("v1_metrics_list").sync_detailed(client=client), m.Metric)

        # How many users do I need?
        size = op("sample_size").sync_detailed(client=client, baseline=0.1, mde=0.05, alpha=0.05, power=0.8)
        _parsed(size, m.SampleSize)

        # Erase u-123.
        erased = _parsed(op("units_destroy").sync_detailed(unit_id="u-123", client=client), m.Erasure)
        assert erased.unit_id == "u-123"
