"""The serving wrapper without I/O: what users get (live, validated versions only), what they cannot do (pin a
version, send anything but bounded, strictly typed JSON), the kill switch failing safe, canaries, several
models side by side, and the configuration.

The shipped definition (models/price_suggestion.yaml) with its predict entry point swapped for a scripted
one (tests/ml_serving_kit.py) on an in-memory store, so each test decides exactly what a model answers and
when the pointer moves; the app's poll thread is off and each test calls ``refresh()`` where a poll would
happen; Flask's test client where the HTTP shape matters.
"""
from __future__ import annotations

import math

import orjson
import pytest
import yaml
from botocore.credentials import Credentials

from handlers.core.config import ConfigError
from handlers.ml.errors import ChecksumMismatch, InvalidKillSwitch, InvalidPointer
from handlers.ml.serving import auth, fleet as fleet_module, routing, service
from handlers.ml.serving.app import create_app
from handlers.ml.serving.client import SigV4Signer
from handlers.ml.serving.config import Canary, ServingConfig
from handlers.ml.serving.wsgi import build
from tests.ml_kit import definition_document
from tests.ml_serving_kit import ManualClock, MemoryStore, request_body, scripted_definition

pytestmark = pytest.mark.unit

PATH = "/v1/price-suggestion"
DEFINITION = scripted_definition()
RAILS = DEFINITION.guard_rails
NAME = DEFINITION.name


def app_for(store: MemoryStore, definitions=DEFINITION, **config):
    """An app that reads the store only when a test says so (``refresh``), on hand-moved clocks."""
    settings = dict(poll=False, clock=ManualClock(), wall_clock=ManualClock(), environ={})
    settings.update(config)
    return create_app(definitions, store, config=ServingConfig(**settings))


def core(app):
    return app.extensions["ml_serving"]


def served(client, body=None, **headers):
    response = client.post(PATH, json=body or request_body(), headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def health(client) -> dict:
    return client.get("/health").json


# -- live versions only --------------------------------------------------------------------------------------------
def test_a_pointer_to_a_version_that_is_not_validated_is_refused_and_the_live_one_stays(monkeypatch):
    reported = []
    monkeypatch.setattr(service, "report_reload_problem", lambda model, version, exc: reported.append(version))
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    app = app_for(store)
    client = app.test_client()
    store.add("v2", {"eur": 9000.0}, validated=False)  # someone wrote current.json by hand
    core(app).refresh()
    core(app).refresh()
    answer = served(client)
    store.add("v3", {"eur": 260.0}, validated=True)
    core(app).refresh()

    assert answer["version"] == "v1" and reported == ["v2"]  # once, not every poll
    assert served(client)["version"] == "v3"
    problem = health(client)["models"][NAME]["reload"]["problem"]
    assert problem is None


def test_a_rollback_is_a_swap_to_the_warm_previous_version_and_forgets_what_the_bad_one_served():
    wall = ManualClock()
    store = MemoryStore()
    store.add("v1", {"eur": 100.0})
    app = app_for(store, wall_clock=wall)
    client = app.test_client()
    assert served(client)["prediction"]["suggested_price_eur"] == 100.0
    store.add("v2", {"eur": 10_000.0})
    core(app).refresh()
    wall.advance(RAILS.max_change_window_seconds)
    limited = served(client)  # the new version's answer moves at most the factor in a window
    store.roll_back("v1")
    core(app).refresh()
    after = served(client)

    assert (limited["version"], limited["change_limited"]) == ("v2", True)
    assert limited["prediction"]["suggested_price_eur"] == pytest.approx(100.0 * (1 + RAILS.max_change_relative))
    assert (after["version"], after["change_limited"], after["prediction"]["suggested_price_eur"]) == ("v1", False,
                                                                                                      100.0)
    assert store.loads == ["v1", "v2"]  # the rollback loaded nothing
    assert health(client)["models"][NAME]["rejected_versions"] == ["v2"]


def test_an_unreadable_pointer_keeps_the_live_version_then_goes_stale(monkeypatch):
    monkeypatch.setattr(service, "report_reload_problem", lambda *args: None)
    clock = ManualClock()
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    app = app_for(store, clock=clock, stale_after_seconds=60, reload_seconds=5)
    client = app.test_client()
    store.pointer_error = InvalidPointer(NAME, "models/price_suggestion/current.json", "not JSON")
    clock.advance(30)
    core(app).refresh()
    meanwhile = served(client)
    clock.advance(31)
    core(app).refresh()
    stale = client.post(PATH, json=request_body())
    body = health(client)["models"][NAME]
    store.pointer_error = None
    core(app).refresh()

    assert meanwhile["version"] == "v1"
    assert stale.status_code == 503 and stale.json["error"]["code"] == "model_stale"
    assert body["status"] == "stale" and body["reload"]["problem"]["error"] == "InvalidPointer"
    assert served(client)["version"] == "v1"


def test_failed_load_keeps_the_previous_version_and_is_reported_in_health():
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    app = app_for(store)
    client = app.test_client()
    store.add("v2", {"eur": 260.0})
    original = store.load

    def tampered(model, version=None, *, trusted_types):
        if version == "v2":
            raise ChecksumMismatch(model, "v2", "a" * 64, "b" * 64)
        return original(model, version, trusted_types=trusted_types)

    store.load = tampered
    core(app).refresh()
    body = health(client)["models"][NAME]
    assert served(client)["version"] == "v1" and body["served"]["stable"]["version"] == "v1"
    assert (body["reload"]["problem"]["version"], body["reload"]["problem"]["error"]) == ("v2", "ChecksumMismatch")


def test_nothing_live_answers_503_and_health_tells_but_the_instance_is_ready():
    client = app_for(MemoryStore()).test_client()
    response = client.post(PATH, json=request_body())
    assert response.status_code == 503 and response.json["error"]["code"] == "model_unavailable"
    answer = client.get("/health")
    assert answer.status_code == 200 and answer.json["models"][NAME]["status"] == "no_model"


# -- nobody but the validator pins a version -----------------------------------------------------------------------
def signed(client, version, body, *, key=b"k" * 32, now=1000.0, path=None, tamper=None):
    path = path or f"/internal/validate/{NAME}/{version}{PATH}"
    raw = orjson.dumps(body)
    header = auth.sign(key, "POST", path, raw, now=now)
    return client.post(path, data=tamper or raw, content_type="application/json", headers={auth.HEADER: header})


def test_version_header_on_a_public_route_is_refused():
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    store.add("v2", {"eur": 900.0}, point=False, validated=False)
    response = app_for(store).test_client().post(PATH, json=request_body(), headers={"X-Model-Version": "v2"})
    assert response.status_code == 403 and response.json["error"]["code"] == "version_pinning_not_public"
    assert store.loads == ["v1"]


def test_the_internal_route_answers_only_signed_requests_for_exactly_what_was_signed():
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    store.add("v2", {"eur": 900.0}, point=False, validated=False)
    client = app_for(store, wall_clock=ManualClock(1000.0)).test_client()
    body = request_body()
    path = f"/internal/validate/{NAME}/v2{PATH}"

    unsigned = client.post(path, json=body)
    wrong_key = signed(client, "v2", body, key=b"x" * 32)
    expired = signed(client, "v2", body, now=1000.0 - auth.MAX_SKEW_SECONDS - 1)
    other_body = signed(client, "v2", body, tamper=orjson.dumps(request_body(title="Mesa de roble")))
    replayed_for_v1 = signed(client, "v2", body, path=f"/internal/validate/{NAME}/v1{PATH}")
    good = signed(client, "v2", body)
    unknown = signed(client, "v9", body)

    for refused in (unsigned, wrong_key, expired, other_body):
        assert refused.status_code == 401 and refused.json["error"]["code"] == "validation_auth_required"
    assert replayed_for_v1.status_code == 200 and replayed_for_v1.json["version"] == "v1"  # signed for v1's path
    assert (good.status_code, good.json["version"], good.json["variant"]) == (200, "v2", "pinned")
    assert good.json["prediction"]["suggested_price_eur"] == 900.0 and good.json["change_limited"] is False
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "unknown_version"
    assert served(client)["version"] == "v1"  # users still get the live version


# -- the kill switch -----------------------------------------------------------------------------------------------
def test_kill_switch_in_the_store_answers_503_to_users_and_to_the_validator_until_it_is_off():
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    app = app_for(store, wall_clock=ManualClock(1000.0))
    client = app.test_client()
    store.killed = True
    core(app).refresh()
    off, pinned = client.post(PATH, json=request_body()), signed(client, "v1", request_body())
    store.killed = False
    core(app).refresh()
    assert off.status_code == pinned.status_code == 503
    assert off.json["error"]["code"] == pinned.json["error"]["code"] == "model_disabled"
    assert store.kill_switch_key(NAME) in off.json["error"]["message"]
    assert served(client)["version"] == "v1"


def test_a_malformed_kill_switch_fails_safe_and_health_tells_the_truth(monkeypatch):
    reported = []
    monkeypatch.setattr(service, "report_kill_switch_problem", lambda model, exc: reported.append(exc.problem))
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    app = app_for(store)
    client = app.test_client()
    malformed = InvalidKillSwitch(NAME, "models/price_suggestion/kill_switch.json",
                                  "'on' must be true or false (a JSON boolean), not \"false\"")
    store.kill_switch_error = malformed  # served, then a malformed switch: off, whatever it was
    core(app).refresh()
    core(app).refresh()  # another poll: the same problem is not reported twice
    off = client.post(PATH, json=request_body())
    answer = client.get("/health")
    store.kill_switch_error = None
    core(app).refresh()

    assert off.status_code == 503 and "unreadable kill switch" in off.json["error"]["message"]
    body = answer.json["models"][NAME]
    assert answer.status_code == 200 and body["status"] == "kill_switch_invalid"
    assert body["kill_switch"] == {"on": True, "store": True, "problem": malformed.problem,
                                   "env": {"name": RAILS.kill_switch_env, "on": False}}
    assert reported == [malformed.problem]
    assert served(client)["version"] == "v1" and health(client)["models"][NAME]["status"] == "ok"


@pytest.mark.parametrize("value, disabled", [("1", True), ("true", True), ("tru", True), ("0", False), ("", False)])
def test_kill_switch_environment_variable_of_the_definition(value, disabled):
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    client = app_for(store, environ={RAILS.kill_switch_env: value}).test_client()
    response = client.post(PATH, json=request_body())
    assert response.status_code == (503 if disabled else 200)
    if disabled:
        assert RAILS.kill_switch_env in response.json["error"]["message"]
    assert health(client)["models"][NAME]["kill_switch"]["on"] is disabled


# -- requests: JSON only, bounded, strictly typed, never a 500 ---------------------------------------------------------
@pytest.mark.parametrize("body, field, reason", [
    (request_body(title=None), "title", "missing_field"),
    (request_body(title="ab"), "title", "too_short"),
    (request_body(category="spaceships"), "category", "not_in_enum"),
    (request_body(country="spain"), "country", "pattern_mismatch"),
    ({**request_body(), "price": 12}, "price", "unknown_property"),
    (request_body(title=12345), "title", "invalid_type"),  # was priced as the title "12345"
    (request_body(title=["a", "b", "c"]), "title", "invalid_type"),
    (request_body(category=True), "category", "invalid_type"),
])
def test_invalid_input_answers_400_naming_the_field_and_why_even_without_a_model(body, field, reason):
    response = app_for(MemoryStore()).test_client().post(PATH, json=body)
    error = response.json["error"]
    assert response.status_code == 400 == error["status"]
    assert (error["code"], error.get("field"), error["details"]["reason"]) == ("invalid_input", field, reason)
    assert error["message"].startswith(f"{field}: ")


@pytest.mark.parametrize("raw, why", [
    (b'{"title": NaN, "category": "phones", "country": "ES", "currency": "EUR"}', "NaN"),
    (b'{"title": "iPhone \\ud800 13", "category": "phones", "country": "ES", "currency": "EUR"}', "lone surrogate"),
    (b'{"title": "\xff\xfe bike", "category": "phones", "country": "ES", "currency": "EUR"}', "invalid UTF-8"),
    (b'[' * 5000 + b']' * 5000, "nesting deeper than JSON parsers allow"),
    (b'{"title": ' + b'[' * 2000 + b']' * 2000 + b'}', "deep nesting in a field"),
    (b'[{"title": "bike"}]', "an array"),
    (b'', "empty"),
])
def test_bodies_no_json_parser_should_accept_answer_400_not_500(raw, why):
    response = app_for(MemoryStore()).test_client().post(PATH, data=raw, content_type="application/json")
    assert response.status_code == 400, why
    assert response.json["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_bodies_not_declared_json_are_refused_415(content_type):
    raw = orjson.dumps(request_body())
    response = app_for(MemoryStore()).test_client().post(PATH, data=raw, content_type=content_type)
    assert response.status_code == 415 and response.json["error"]["code"] == "unsupported_media_type"


def test_a_body_over_the_limit_is_refused_413_before_it_is_read():
    client = app_for(MemoryStore(), max_body_bytes=1024).test_client()
    large = orjson.dumps({**request_body(), "title": "x" * 10_000_000})
    response = client.post(PATH, data=large, content_type="application/json")
    assert response.status_code == 413 and response.json["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("method, path, status", [("get", PATH, 405), ("post", "/v1/nothing-here", 404)])
def test_unknown_routes_and_methods_answer_the_one_error_shape(method, path, status):
    response = getattr(app_for(MemoryStore()).test_client(), method)(path)
    assert response.status_code == status
    assert set(response.json["error"]) == {"status", "code", "message"} and response.json["error"]["status"] == status


def test_only_declared_outputs_leave_and_the_answer_names_version_and_variant():
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    response = app_for(store).test_client().post(PATH, json=request_body(currency="GBP"))
    body = response.json
    assert list(body["prediction"]) == list(DEFINITION.endpoint(PATH).outputs)
    assert body["prediction"]["suggested_price"] == pytest.approx(250.0 * 0.86)
    assert (body["model"], body["version"], body["variant"], body["abstained"]) == (NAME, "v1", "stable", False)
    assert response.headers["X-Model-Version"] == "v1"


def test_predict_that_raises_answers_500_and_counts_an_error():
    store = MemoryStore()
    store.add("v1", {"eur": 1.0, "raise": "boom"})
    client = app_for(store).test_client()
    response = client.post(PATH, json=request_body())
    assert response.status_code == 500 and response.json["error"]["code"] == "prediction_failed"
    assert client.get("/metrics").json["models"][NAME]["variants"]["stable"]["errors"] == 1


# -- canaries ------------------------------------------------------------------------------------------------------
USERS = [f"usr_{i:06d}" for i in range(20_000)]


@pytest.mark.parametrize("share", [0.01, 0.05, 0.2, 0.5])
def test_canary_share_of_users_is_within_four_sigma_of_the_configured_share(share):
    canary = sum(routing.variant_for(NAME, user, share) == routing.CANARY for user in USERS)
    n = len(USERS)
    sigma = math.sqrt(n * share * (1 - share))
    assert abs(canary - n * share) <= 4 * sigma, (canary, n * share, sigma)


def test_canary_assignment_is_sticky_only_grows_and_spares_anonymous_users():
    small = {u for u in USERS if routing.variant_for(NAME, u, 0.05) == routing.CANARY}
    larger = {u for u in USERS if routing.variant_for(NAME, u, 0.2) == routing.CANARY}
    other = {u for u in USERS if routing.variant_for("category_suggestion", u, 0.05) == routing.CANARY}
    assert small < larger and small != other
    assert routing.variant_for(NAME, None, 1.0) == routing.variant_for(NAME, "", 1.0) == routing.STABLE


def test_app_serves_a_validated_canary_to_the_same_users_every_time_and_counts_per_variant():
    store = MemoryStore()
    store.add("canary-v", {"eur": 300.0}, point=False)
    store.add("stable-v", {"eur": 310.0})
    client = app_for(store, canaries={NAME: Canary("canary-v", 0.3)}).test_client()
    users = USERS[:60]
    expected = {u: routing.variant_for(NAME, u, 0.3) for u in users}
    answers = [(u, served(client, **{"X-User-Id": u})) for u in users * 2]

    for user, answer in answers:
        assert answer["version"] == ("canary-v" if expected[user] == routing.CANARY else "stable-v")
    counters = client.get("/metrics").json["models"][NAME]["variants"]
    assert counters["canary"]["predictions"] == 2 * sum(v == routing.CANARY for v in expected.values())
    assert health(client)["models"][NAME]["served"]["canary"]["version"] == "canary-v"


def test_a_canary_that_is_not_validated_is_never_served():
    store = MemoryStore()
    store.add("candidate", {"eur": 9000.0}, point=False, validated=False)
    store.add("stable-v", {"eur": 310.0})
    client = app_for(store, canaries={NAME: Canary("candidate", 1.0)}).test_client()
    assert {served(client, **{"X-User-Id": u})["version"] for u in USERS[:50]} == {"stable-v"}
    problem = health(client)["models"][NAME]["canary"]["problem"]
    assert problem["error"] == "NotValidated" and "unvalidated" in problem["message"]


# -- several models ------------------------------------------------------------------------------------------------
def other_model(name: str = "price_suggestion_pro", path: str = "/v1/price-suggestion-pro"):
    from handlers.ml.definition import parse_definition

    document = definition_document()
    document["name"] = name
    document["serving"]["predict"] = "tests.ml_serving_kit:scripted_predict"
    document["serving"]["endpoints"][0]["path"] = path
    for golden in document["golden_requests"]:
        golden["endpoint"] = path
    return parse_definition(document, f"{name}.yaml")


def test_two_models_side_by_side_and_one_that_cannot_be_served_disables_only_itself(monkeypatch):
    reported = []
    monkeypatch.setattr(fleet_module, "report_definition_problem", lambda file, exc, where: reported.append(file))
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})  # one pointer for every model name in this store: enough here
    conflicting = other_model("price_suggestion_copy", PATH)
    models = {NAME: DEFINITION, "price_suggestion_pro": other_model(), "price_suggestion_copy": conflicting}
    app = create_app(models, store, broken={"broken_model.yaml": ValueError("evaluation.metrics: unknown")},
                     config=ServingConfig(poll=False, environ={}))
    client = app.test_client()

    assert served(client)["model"] == NAME
    assert client.post("/v1/price-suggestion-pro", json=request_body()).json["model"] == "price_suggestion_pro"
    body = health(client)
    assert set(body["models"]) == {NAME, "price_suggestion_pro"}
    assert set(body["disabled"]) == {"broken_model.yaml", "price_suggestion_copy.yaml"}
    assert "already served by price_suggestion" in body["disabled"]["price_suggestion_copy.yaml"]
    assert sorted(reported) == ["broken_model.yaml", "price_suggestion_copy.yaml"]
    paths = client.get("/openapi.json").json["paths"]
    assert {PATH, "/v1/price-suggestion-pro", "/health", "/metrics"} <= set(paths)


def test_wsgi_names_the_variable_it_cannot_run_with(tmp_path):
    (tmp_path / "price_suggestion.yaml").write_text(yaml.safe_dump(definition_document()))
    environ = {"MODELS_BUCKET": "models", "MODEL_DEFINITIONS_DIR": str(tmp_path)}
    for wrong, variable in (({k: v for k, v in environ.items() if k != "MODELS_BUCKET"}, "MODELS_BUCKET"),
                            ({**environ, "MODELS": "nothing_like_it"}, "MODELS"),
                            ({**environ, "MODEL_DEFINITIONS_DIR": str(tmp_path / "no")}, "MODEL_DEFINITIONS_DIR"),
                            ({**environ, "MODEL_DEFINITIONS_DIR": str(tmp_path.parent)}, "MODEL_DEFINITIONS_DIR")):
        with pytest.raises(ConfigError) as refused:
            build(wrong)
        assert refused.value.where == variable


# -- configuration -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("environ, variable", [
    ({"CANARIES": '{"price_suggestion": {"version": "v1", "share": 1.5}}'}, "CANARIES"),
    ({"CANARIES": '{"price_suggestion": {"version": "v1"}}'}, "CANARIES"),
    ({"CANARIES": "v1:0.1"}, "CANARIES"),
    ({"RELOAD_SECONDS": "-1"}, "RELOAD_SECONDS"),
    ({"RELOAD_SECONDS": "10", "STALE_AFTER_SECONDS": "5"}, "STALE_AFTER_SECONDS"),
    ({"PINNED_CACHE_SIZE": "0"}, "PINNED_CACHE_SIZE"),
    ({"MAX_BODY_BYTES": "lots"}, "MAX_BODY_BYTES"),
])
def test_config_from_environ_names_the_variable_it_refuses(environ, variable):
    with pytest.raises(ConfigError) as refused:
        ServingConfig.from_environ(environ)
    assert refused.value.where == variable


def test_config_from_environ_reads_every_setting_and_ignores_the_old_version_header_switch():
    config = ServingConfig.from_environ({"CANARIES": '{"price_suggestion": {"version": "v7", "share": 0.05}}',
                                         "RELOAD_SECONDS": "2", "USER_ID_HEADER": "X-Letgo-User",
                                         "ALLOW_VERSION_HEADER": "1", "CHANGE_MEMORY": "dynamodb:anchors",
                                         "MAX_BODY_BYTES": "4096"})
    assert (dict(config.canaries), config.reload_seconds, config.user_id_header, config.change_memory,
            config.max_body_bytes) == ({NAME: Canary("v7", 0.05)}, 2.0, "X-Letgo-User", "dynamodb:anchors", 4096)
    assert not hasattr(config, "allow_version_header")


# -- SigV4 signing of the validator's requests (API Gateway's IAM gate) --------------------------------------------
def test_sigv4_signer_signs_the_exact_body_for_the_service_and_region():
    signer = SigV4Signer("eu-west-1", service="execute-api", credentials=Credentials("AKIDEXAMPLE", "secret", "tok"))
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com/internal/validate/price_suggestion/v1/v1/price"
    headers = {"Content-Type": "application/json", auth.HEADER: "t=1,sig=" + "0" * 64}
    one = signer.sign("POST", url, headers, b'{"title": "bike"}')
    two = signer.sign("POST", url, headers, b'{"title": "bikes"}')

    authorization = one["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    assert auth.HEADER.lower() in authorization.split("SignedHeaders=")[1]
    assert authorization.split("Signature=")[1] != two["Authorization"].split("Signature=")[1]
