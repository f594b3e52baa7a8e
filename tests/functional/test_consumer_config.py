"""The consumer's configuration from its Lambda environment, with secrets read from (moto's) Secrets Manager."""
from __future__ import annotations

import orjson
import pytest

from handlers.core.aws import client
from handlers.core.config import ConfigError, Env
from handlers.tracking.consumer import ConsumerConfig

pytestmark = pytest.mark.functional


def test_database_url_is_built_from_the_rds_managed_secret_and_the_endpoint(stage):
    arn = client("secretsmanager").create_secret(
        Name="rds-managed-test",
        SecretString=orjson.dumps({"username": "letgo_admin", "password": "p@ss/w:rd"}).decode()
    )["ARN"]
    config = ConsumerConfig.from_env(Env({"RAW_BUCKET": "r", "QUARANTINE_BUCKET": "q", "DATABASE_SECRET_ARN": arn,
                                          "DATABASE_HOST": "cluster.local", "DATABASE_PORT": "5433"}))
    assert config.database_url == "postgresql://letgo_admin:p%40ss%2Fw%3Ard@cluster.local:5433/events?sslmode=require"


def test_missing_buckets_stop_start_up_with_their_names():
    with pytest.raises(ConfigError, match="RAW_BUCKET: is not set"):
        ConsumerConfig.from_env(Env({}))
    with pytest.raises(ConfigError, match="QUARANTINE_BUCKET: is not set"):
        ConsumerConfig.from_env(Env({"RAW_BUCKET": "r", "QUARANTINE_BUCKET": ""}))  # empty = unset
