"""The client-safe document (docs/assignment.md section 7a): same answers, fewer secrets."""
import json
from pathlib import Path

from assignment import vectors
from assignment.clientdoc import client_document, override_hash, secret_override_salt
from assignment.evaluator import Evaluator

VECTORS = json.loads(Path(vectors.PATH).read_text(encoding="utf-8"))


def test_client_document_answers_equal_the_full_document():
    full = Evaluator(VECTORS["document"])
    client = Evaluator(VECTORS["client_document"])
    assert VECTORS["client_cases"]
    for case in VECTORS["client_cases"]:
        a = full.evaluate(case["experiment"], case["unit_id"], case["attributes"])
        b = client.evaluate(case["experiment"], case["unit_id"], case["attributes"])
        assert a == b == client.evaluate(case["experiment"], case["unit_id"], case["attributes"])
        assert (b.variant, b.in_experiment, b.reason) == (case["variant"], case["in_experiment"], case["reason"])
    assert {c["reason"] for c in VECTORS["client_cases"]} >= {"override", "shipped", "assigned"}


def test_client_document_leaves_out_drafts_unshipped_and_raw_unit_ids():
    doc = VECTORS["client_document"]
    statuses = {e["key"]: e["status"] for e in doc["experiments"]}
    assert "draft-test" not in statuses
    assert set(statuses.values()) <= {"running", "paused", "completed", "archived"}
    text = json.dumps(doc)
    raw_units = {u for e in VECTORS["document"]["experiments"] for u in e["overrides"]}
    assert raw_units and not any(f'"{u}"' in text for u in raw_units)
    shipped = next(e for e in doc["experiments"] if e["status"] in ("completed", "archived"))
    assert [v["key"] for v in shipped["variants"]] == [shipped["shipped_variant"]]


def test_override_hash_vectors_and_secret_salts():
    for case in VECTORS["overrides"]:
        assert override_hash(case["override_salt"], case["unit_id"]) == case["hash"]
    salt = secret_override_salt("secret")
    assert salt("a") != salt("b") and len(salt("a")) == 32
    assert secret_override_salt("other")("a") != salt("a")
    # A new salt is a new document version (the version hashes the client body).
    one = client_document(VECTORS["document"], salt)
    two = client_document(VECTORS["document"], secret_override_salt("other"))
    assert one["version"] != two["version"]


def test_vector_file_is_current():
    assert vectors.build() == VECTORS
