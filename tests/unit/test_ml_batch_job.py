"""The Batch entry point's configuration: arguments over environment over defaults; what is missing is named."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from handlers.core.config import ConfigError
from handlers.ml.batch_job import EXIT_ERROR, JobConfig, main

pytestmark = pytest.mark.unit

ENV = {"MODEL_DEFINITION": "models/price_suggestion.yaml", "PROCESSED_BUCKET": "processed-env",
       "MODELS_BUCKET": "models-env", "STAGE": "dev"}


def test_arguments_override_the_environment_and_defaults_fill_the_rest():
    config = JobConfig.from_sources(["--models-bucket", "models-arg", "--end-date", "2026-11-20"], ENV)
    assert config.models_bucket == "models-arg" and config.processed_bucket == "processed-env"
    assert config.definition == Path("models/price_suggestion.yaml")
    assert config.models_prefix == "models/" and config.end_date == date(2026, 11, 20) and config.stage == "dev"
    assert config.event_types is not None and config.event_types.name == "event_types"


def test_missing_configuration_names_every_missing_variable():
    with pytest.raises(ConfigError) as error:
        JobConfig.from_sources([], {"MODEL_DEFINITION": "x.yaml"})
    assert error.value.where == "PROCESSED_BUCKET, MODELS_BUCKET"


def test_a_malformed_end_date_is_refused():
    with pytest.raises(ConfigError, match="not a YYYY-MM-DD date") as error:
        JobConfig.from_sources(["--end-date", "26/11/2026"], ENV)
    assert error.value.where == "END_DATE"


def test_main_exits_1_on_bad_configuration():
    assert main([], {}) == EXIT_ERROR
