"""Several models in one serving process: each its own :class:`~handlers.ml.serving.service.ModelService`, one
change memory and one validation-key verifier for all, and the models that could not be served with the reason.

Why one deployment for N models (and not one per model): the models are small (a few MB each), the image already
ships every definition under ``models/``, and a Beanstalk environment per model would multiply the fixed cost
(load balancer, instances, HTTP API, the validator's configuration) for no isolation a process does not already
give: each model has its own pointer, poll thread, kill switch, counters and guard rails, and a model that
cannot be served — a broken YAML, a path another model already declares, a version that will not load — is
disabled alone, with a Sentry issue, while the others answer. ``MODELS`` restricts a deployment to some models
when one does need its own fleet (a heavy model), and the validator can be given a URL per model.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

from handlers.ml.definition_types import Endpoint, ModelDefinition
from handlers.ml.serving.alerts import report_definition_problem, report_memory_problem
from handlers.ml.serving.auth import Verifier
from handlers.ml.serving.config import ServingConfig
from handlers.ml.serving.memory import describe, open_memory
from handlers.ml.serving.service import ModelService

log = logging.getLogger(__name__)


class Fleet:
    """The models this process serves, their routes, and the ones it cannot serve (name/file -> why)."""

    def __init__(self, definitions: Mapping[str, ModelDefinition], store: Any, config: ServingConfig, *,
                 broken: Mapping[str, Exception] | None = None, memory: Any = None) -> None:
        self.store, self.config = store, config
        self.memory = memory if memory is not None else open_memory(
            config.change_memory, capacity=config.change_memory_size,
            ttl_seconds=config.change_memory_retention_seconds,
            on_failure=lambda exc: report_memory_problem(config.change_memory.split(":", 1)[0], exc))
        self.verifier = Verifier(lambda: store.validation_key(), clock=config.wall_clock)
        self.services: dict[str, ModelService] = {}
        self.routes: dict[str, tuple[ModelService, Endpoint]] = {}
        self.disabled: dict[str, str] = {}
        for filename, error in (broken or {}).items():
            self._disable(filename, error, "the serving fleet")
        for name in sorted(definitions):
            definition = definitions[name]
            taken = [e.path for e in definition.endpoints if e.path in self.routes]
            if taken:
                owner = self.routes[taken[0]][0].name
                self._disable(definition.filename, ValueError(f"{', '.join(taken)} is already served by {owner}"),
                              "the serving fleet")
                continue
            service = ModelService(definition, store, config, self.memory)
            self.services[name] = service
            for endpoint in definition.endpoints:
                self.routes[endpoint.path] = (service, endpoint)
        for model in config.canaries:
            if model not in self.services:
                log.warning("a canary is configured for %s, which this process does not serve", model)

    def _disable(self, filename: str, error: Exception, where: str) -> None:
        self.disabled[filename] = str(error)
        log.error("%s: disabled (%s)", filename, error)
        report_definition_problem(filename, error, where=where)

    def service(self, model: str) -> ModelService | None:
        return self.services.get(model)

    def refresh(self) -> None:
        for service in self.services.values():
            service.refresh()

    def start(self) -> None:
        for service in self.services.values():
            service.start()

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()

    def health(self) -> tuple[dict[str, Any], int]:
        """The truth about every model, and 200 only when this process serves every live model it should."""
        models = {name: service.health() for name, service in self.services.items()}
        ready = bool(self.services) and all(service.ready() for service in self.services.values())
        statuses = {body["status"] for body in models.values()}
        status = "ok" if ready and statuses <= {"ok"} and not self.disabled else "degraded" if ready else "not_ready"
        return {"status": status, "process": {"pid": os.getpid()}, "models": models, "disabled": dict(self.disabled),
                "change_memory": describe(self.memory)}, 200 if ready else 503

    def metrics(self) -> dict[str, Any]:
        return {"models": {name: service.counters.snapshot() for name, service in self.services.items()}}
