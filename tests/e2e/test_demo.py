"""``make run`` in small: its own local stage, synthetic traffic, the conservation report."""
from __future__ import annotations

import orjson
import pytest

from letgo.demo import run_demo
from tests.stage_kit import private_tmp, stop_leftover_postgres

pytestmark = pytest.mark.e2e


EVENTS = 12_000  # enough listings for the models' min_rows (500) after the holdout
MODELS = ("category_suggestion", "price_suggestion")


def test_demo_accounts_for_every_event_indexes_listings_and_serves_two_validated_models(tmp_path):
    lines: list[str] = []
    with private_tmp() as workdir:  # not tmp_path: see tests/stage_kit.py (PostgreSQL runs as `postgres`)
        report = run_demo(EVENTS, workdir=workdir / "stage", report_dir=tmp_path / "reports",
                          warehouse_dir=tmp_path / "warehouse", say=lines.append)
        assert stop_leftover_postgres(workdir) == [], "run_demo left PostgreSQL running"

    assert report["ok"] is True, report["checks"]
    assert lines[-1].startswith(f"conservation: OK sent={EVENTS}"), lines[-1]
    assert report["sent"] == EVENTS

    search = report["search"]
    assert search["indexed"] > 0 and search["removed"] > 0
    madrid, typo, english_phone, amsterdam, typing = search["examples"]
    assert madrid["total"] > 0 and madrid["language"]["language"] == "es" and madrid["top"]
    assert typo["did_you_mean"] == "bicicleta"
    assert english_phone["language"]["language"] == "es" and english_phone["total"] > 0  # the place, not the phone
    assert amsterdam["language"]["language"] == "nl" and amsterdam["total"] > 0
    assert all("fiets" in line.lower() for line in amsterdam["top"])  # "fiets" found the Stadsfietsen
    assert typing["suggestions"] and all("iphone" in s.lower() for s in typing["suggestions"])

    ml = report["ml"]
    assert sorted(ml["training"]) == sorted(ml["models"]) == list(MODELS) and ml["disabled"] == {}
    for name in MODELS:  # trained, published as a candidate, validated on the fleet, then live and answering
        version = ml["training"][name]["version"]
        model = ml["models"][name]
        assert ml["training"][name]["decision"] == "published" and version
        assert [(v["version"], v["outcome"]) for v in model["validations"]] == [(version, "validated")]
        assert model["current"] == version and version in model["validated"]
        assert model["predictions"] and all(p["status"] == 200 for p in model["predictions"])
        assert all(p["output"]["version"] == version for p in model["predictions"])
    categories = [p["output"]["prediction"]["category"] for p in ml["models"]["category_suggestion"]["predictions"]]
    assert categories == ["phones", "cars", "fashion", "bikes"]  # its golden requests, asked as a user
    assert {"accuracy", "f1_macro", "log_loss", "calibration_error"} == set(ml["training"]["category_suggestion"]
                                                                            ["metrics"])
    assert any(line.strip().startswith("ml             category_suggestion: published") for line in lines)
    assert report["sent"] == report["delivered"]["postgres"] + report["quarantined"] + report["duplicates"]
    assert report["quarantined"] > 0 and report["duplicates"] > 0  # the traffic does exercise both paths

    # make run leaves a warehouse to query: the run's events, and the README's analyst query answered
    assert report["warehouse"]["events"] == report["delivered"]["postgres"] and report["warehouse"]["rows"] > 0
    # the three stream functions read the stream side by side, and the report says where the time went
    assert "consumer + statistics + search indexer, side by side" in report["timings_seconds"]

    written = orjson.loads((tmp_path / "reports").joinpath(report["path"].rsplit("/", 1)[-1]).read_bytes())
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(
        [report["path"].rsplit("/", 1)[-1], report["metrics"]["chart"].rsplit("/", 1)[-1]])
    assert (tmp_path / "reports" / report["metrics"]["chart"].rsplit("/", 1)[-1]).read_bytes()[:4] == b"\x89PNG"
    assert report["metrics"]["metrics"]["events_per_type"]["windows"] >= 1
    assert written["sent"] == EVENTS and written["ok"] is True
    assert written["sent"] == written["delivered"]["postgres"] + written["quarantined"] + written["duplicates"]
    assert written["checks"] == report["checks"]
