"""The relative gate when the market moves, measured with the real training job on moto: the live model was trained
on yesterday's listings, today's asking prices are 5 % higher (or lower), and the candidate learnt today's.

The shipped price definition compares candidate and live model on ``male`` (mean absolute log error): the candidate
is published in both directions. MAPE, which the gate used to compare on, is measured on the same holdouts: it
judges the two directions very differently (it prefers answers below the median, so it holds a rising market's
candidate back and flatters a falling market's) — the asymmetry that refused a +5 % retraining and published the
-5 % one. The numbers are printed.
"""
from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from handlers.ml.metrics import METRICS
from handlers.ml.report import Decision
from handlers.ml.store import ModelStore
from handlers.ml.training import run_training
from tests.ml_kit import END, definition, listing_documents, write_processed
from tests.ml_serving_kit import shared_aws

pytestmark = pytest.mark.functional

YESTERDAY, TODAY = END - timedelta(days=1), END
SETTINGS = {"data.lookback_days": 1, "data.max_rows": 3000}
_names = itertools.count(1)


@pytest.fixture(scope="session")
def aws(request, tmp_path_factory):
    return shared_aws(request, tmp_path_factory)


def retrain_after_a_shift(aws, factor: float):
    s3 = aws.s3()
    events = aws.bucket(f"market-events-{next(_names)}")
    write_processed(s3, events, listing_documents(3000, seed=2, day=YESTERDAY))
    write_processed(s3, events, listing_documents(3000, seed=12, day=TODAY, price_factor=factor))
    store = ModelStore(aws.bucket(f"market-models-{next(_names)}"), s3=s3)
    spec = definition(**SETTINGS)
    live = run_training(spec, events_s3=s3, processed_bucket=events, store=store, end=YESTERDAY, alert=lambda r: None)
    store.mark_validated(spec.name, live.version)
    store.promote(spec.name, live.version, reason="validator: test")
    return run_training(spec, events_s3=s3, processed_bucket=events, store=store, end=TODAY, alert=lambda r: None)


def worse(report, metric: str) -> float:
    return METRICS[metric].worse_by(report.metrics[metric], report.baseline.metrics[metric])


def test_a_candidate_tracking_a_5_percent_move_is_published_both_ways(aws):
    up, down = retrain_after_a_shift(aws, 1.05), retrain_after_a_shift(aws, 0.95)

    print(f"\nprices +5 %: male {worse(up, 'male'):+.1%}, mape {worse(up, 'mape'):+.1%} (candidate vs live, same "
          f"holdout); prices -5 %: male {worse(down, 'male'):+.1%}, mape {worse(down, 'mape'):+.1%}")
    assert (up.decision, down.decision) == (Decision.PUBLISHED, Decision.PUBLISHED)
    for report in (up, down):
        gate = {g.name: g for g in report.gates}["relative:male"]
        assert gate.passed and not gate.skipped and report.baseline.basis == "same holdout"
        assert worse(report, "male") < 0.02
    assert worse(up, "mape") - worse(down, "mape") > 0.05  # MAPE's verdict depends on the direction
