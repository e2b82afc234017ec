"""``manage.py import_events``: same validation and idempotency as the API, plus a summary."""
from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from analysis import ingestion
from analysis.models import Event

HEADER = "event_id,unit_id,event,value,timestamp,properties\n"
GOOD = [
    'e1,u1,purchase,12.5,2026-11-20T10:00:00Z,"{""currency"": ""EUR""}"\n',
    "e2,u1,page_view,,2026-11-20T10:05:00Z,\n",
    "e3,u2,purchase,3,2026-11-21T00:00:00+01:00,{}\n",
]
BAD = [
    "e4,u2,bad name,1,2026-11-20T10:00:00Z,\n",          # line 5
    "e5,u2,purchase,abc,2026-11-20T10:00:00Z,\n",         # line 6
    "e6,u2,purchase,1,,\n",                               # line 7: no timestamp
    "e7,u2,purchase,1,2026-11-20T10:00:00Z,{oops\n",      # line 8
    "e8,u2,other name,1,1990-01-01T00:00:00Z,\n",         # line 9: two reasons
    ",u3,purchase,1,2026-11-20T10:00:00Z,\n",             # line 10
    "e1,u1,purchase,12.5,2026-11-20T10:00:00Z,\n",        # line 11: duplicate of line 2
    "e9,u1,purchase,1,2026-11-20T10:00:00Z,,extra\n",     # line 12: too many cells
]


def run(path, *args):
    out, err = io.StringIO(), io.StringIO()
    call_command("import_events", str(path), "--no-progress", *args, stdout=out, stderr=err)
    return out.getvalue()


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(HEADER + "".join(GOOD + BAD), encoding="utf-8")
    return path


def test_import_stores_valid_rows_and_summarises_rejections(db, csv_file):
    out = run(csv_file, "--chunk-size", "2")
    assert "3 accepted, 1 duplicates, 7 rejected" in out
    assert set(Event.objects.values_list("event_id", flat=True)) == {"e1", "e2", "e3"}
    e1 = Event.objects.get(event_id="e1")
    assert e1.value == 12.5 and e1.properties == {"currency": "EUR"}
    assert f"event: {ingestion.EVENT_NAME}  (lines 5, 9)" in out
    assert f"value: {ingestion.NOT_A_NUMBER}  (lines 6)" in out
    assert f"timestamp: {ingestion.REQUIRED}  (lines 7)" in out
    assert "properties: Must be a JSON object (the cell is not valid JSON).  (lines 8)" in out
    assert f"timestamp: {ingestion.TOO_OLD}  (lines 9)" in out
    assert f"event_id: {ingestion.REQUIRED}  (lines 10)" in out
    assert "(lines 12)" in out


def test_a_second_import_stores_nothing_twice(db, csv_file):
    run(csv_file)
    out = run(csv_file)
    assert "0 accepted, 4 duplicates, 7 rejected" in out
    assert Event.objects.count() == 3


def test_summary_shows_only_the_first_line_numbers(db, tmp_path):
    path = tmp_path / "many.csv"
    rows = [f"x{i},u,bad name,1,2026-11-20T10:00:00Z,\n" for i in range(20)]
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    out = run(path, "--chunk-size", "7")
    assert "0 accepted, 0 duplicates, 20 rejected" in out
    assert "(lines 2, 3, 4, 5, 6, ...)" in out


def test_bad_files_and_options(db, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        run(tmp_path / "missing.csv")
    path = tmp_path / "nohead.csv"
    path.write_text("id,unit,name\n1,u,x\n", encoding="utf-8")
    with pytest.raises(CommandError, match="event_id, unit_id, event"):
        run(path)
    with pytest.raises(CommandError, match="chunk-size"):
        run(path, "--chunk-size", "0")
