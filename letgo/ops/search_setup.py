"""``letgo search setup --stage S``: a deployed stage's search domain made ready, as the domain's admin role.

The domain runs fine-grained access control and has no public endpoint (run this from a host inside the
VPC). Acting as its admin role, this creates the index templates, versioned indices and aliases (the
backend's idempotent ``setup()``) and the two narrow security roles of :mod:`handlers.search.access` mapped to
their IAM roles: ``letgo_search_writer`` for the indexer's role, ``letgo_search_reader`` for the search API's
instances. Running it again changes nothing.

The admin role's credentials live in one explicit ``boto3.session.Session`` that signs this process's requests
to the domain and nothing else: they are never written to ``os.environ`` (where every cached client of
:mod:`handlers.core.aws` would silently pick them up).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import boto3

from handlers.core.config import Env
from handlers.search import access
from handlers.search.opensearch_backend import OpenSearchBackend, OpenSearchConfig
from letgo.ops.stacks import stack_outputs

SESSION_NAME = "letgo-search-setup"


@dataclass(frozen=True)
class SearchStage:
    """What the setup needs from a deployed stage's stacks."""

    domain_endpoint: str
    admin_role_arn: str
    writer_role_arn: str  # the search indexer's role
    reader_role_arn: str  # the search API's instance role

    @classmethod
    def from_stacks(cls, cloudformation: Any, stage: str) -> "SearchStage":
        search = stack_outputs(cloudformation, "elasticsearch", stage)
        writer = stack_outputs(cloudformation, "search-indexer", stage)["IndexerRoleArn"]
        reader = stack_outputs(cloudformation, "search-api", stage)["InstanceRoleArn"]
        return cls(search["DomainEndpoint"], search["AdminRoleArn"], writer, reader)


def assumed_session(sts: Any, role_arn: str, *, region: str,
                    session_name: str = SESSION_NAME) -> boto3.session.Session:
    """A boto3 session acting as ``role_arn`` (temporary credentials), for the caller to hand down."""
    credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
    return boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                 aws_secret_access_key=credentials["SecretAccessKey"],
                                 aws_session_token=credentials["SessionToken"], region_name=region)


def default_replicas(stage: str, replicas: int | None) -> int:
    """One replica shard on PROD, none elsewhere, unless asked."""
    return 1 if replicas is None and stage.upper() == "PROD" else replicas or 0


def domain_config(endpoint: str, *, region: str, replicas: int, env: Mapping[str, str] | None = None
                  ) -> OpenSearchConfig:
    """The backend configuration for the domain (other ``LETGO_OPENSEARCH_*`` variables still count)."""
    return OpenSearchConfig.from_env({**Env(env).values, "LETGO_OPENSEARCH_URL": f"https://{endpoint}",
                                      "LETGO_OPENSEARCH_AWS_REGION": region,
                                      "LETGO_OPENSEARCH_REPLICAS": str(replicas)})


def signed_client(config: OpenSearchConfig, session: boto3.session.Session) -> Any:
    """An opensearch-py client whose requests are SigV4-signed with ``session``'s credentials."""
    from opensearchpy import OpenSearch, RequestsHttpConnection
    from requests_aws4auth import AWS4Auth

    credentials = session.get_credentials()
    return OpenSearch(hosts=[config.url], timeout=config.timeout_s, max_retries=2, retry_on_timeout=True,
                      http_auth=AWS4Auth(region=config.aws_region, service=config.aws_service,
                                         refreshable_credentials=credentials),
                      connection_class=RequestsHttpConnection, verify_certs=True)


def set_up(stage: SearchStage, config: OpenSearchConfig, admin: boto3.session.Session) -> list[str]:
    """Templates, versioned indices and aliases, then the roles and their mappings; returns what was written."""
    with OpenSearchBackend(config, client=signed_client(config, admin)) as backend:  # setup() on entry
        return access.apply(backend.client, [stage.writer_role_arn], [stage.reader_role_arn])
