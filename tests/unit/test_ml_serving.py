"""The serving wrapper without I/O: guard rails, canary assignment, input checks, reloads and the kill switch.

The shipped definition (models/price_suggestion.yaml) with its predict entry point swapped for a scripted
one (tests/ml_serving_kit.py) on an in-memory store, so each test decides exactly what a model answers and
when the pointer moves; Flask's test client where the HTTP shape matters.
"""
from __future__ import annotations

import math

import pytest
from botocore.credentials import Credentials

from handlers.core.config import ConfigError
from handlers.ml.errors import ChecksumMismatch, InvalidKillSwitch
from handlers.ml.serving import routing, service
from handlers.ml.serving.app import create_app
from handlers.ml.serving.client import SigV4Signer
from handlers.ml.serving.config import ServingConfig
from handlers.ml.serving.errors import PredictionFailed
from handlers.ml.serving.guards import ChangeLimiter, guard, input_key
from handlers.ml.serving.wsgi import build
from tests.ml_serving_kit import ManualClock, MemoryStore, request_body, scripted_definition

pytestmark = pytest.mark.unit

PATH = "/v1/price-suggestion"
DEFINITION = scripted_definition()
RAILS = DEFINITION.guard_rails
OUTPUTS = {"suggested_price": 0.0, "low": 0.0, "high": 0.0, "currency": "EUR", "suggested_price_eur": 0.0}


def outputs(eur: float) -> dict:
    return {**OUTPUTS, "suggested_price": eur, "low": eur / 2, "high": eur * 2, "suggested_price_eur": eur}


def app_for(store: MemoryStore, **config):
    """An app that checks the pointer on every request, inline (no thread), on a hand-moved clock."""
    settings = dict(reload_seconds=0, background_reload=False, clock=ManualClock(), environ={})
    settings.update(config)
    return create_app(DEFINITION, store, config=ServingConfig(**settings))


def served(client, body=None, **headers):
    response = client.post(PATH, json=body or request_body(), headers=headers)
    assert response.status_code == 200, response.json
    return response.json


# -- output bounds -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, bound", [(RAILS.output_min / 10, RAILS.output_min),
                                        (RAILS.output_max * 3, RAILS.output_max), (-5.0, RAILS.output_min)])
def test_guard_value_outside_the_bounds_is_clamped_and_related_outputs_scaled(raw, bound):
    result = guard(RAILS, outputs(raw))

    assert result.clamped and not result.change_limited
    assert result.outputs["suggested_price_eur"] == bound
    factor = bound / raw
    assert result.outputs["low"] == pytest.approx(round(raw / 2 * factor, 2))
    assert result.outputs["high"] == pytest.approx(round(raw * 2 * factor, 2))
    assert result.outputs["currency"] == "EUR"
    assert result.report(RAILS)["raw"] == raw and result.report(RAILS)["bounds"] == [RAILS.output_min,
                                                                                      RAILS.output_max]


def test_guard_value_inside_the_bounds_is_untouched_and_not_reported():
    inside = (RAILS.output_min + RAILS.output_max) / 2
    result = guard(RAILS, outputs(inside))
    assert (result.clamped, result.change_limited, result.report(RAILS)) == (False, False, None)
    assert result.outputs == outputs(inside)


def test_guard_without_scaling_leaves_related_outputs_alone():
    raw = RAILS.output_max * 2
    result = guard(RAILS, outputs(raw), scale_related=False)
    assert result.outputs["suggested_price_eur"] == RAILS.output_max
    assert result.outputs["high"] == raw * 2


@pytest.mark.parametrize("value", [math.nan, math.inf, None, "120", True])
def test_guard_value_that_is_not_a_finite_number_is_never_served(value):
    with pytest.raises(PredictionFailed) as refused:
        guard(RAILS, {**OUTPUTS, "suggested_price_eur": value})
    assert refused.value.details["field"] == RAILS.output_field


# -- maximum change over a window ----------------------------------------------------------------------------------
def limiter(clock, capacity=100):
    return ChangeLimiter(RAILS.max_change_relative, RAILS.max_change_window_seconds, capacity=capacity, clock=clock)


@pytest.mark.parametrize("factor", [0.2, 0.9, 1.2, 5.0])
def test_change_within_the_window_is_capped_around_the_first_answer(factor):
    clock, anchor = ManualClock(), 400.0
    cap = limiter(clock)
    key = input_key(PATH, request_body())
    assert cap.limit(key, anchor) == (anchor, None)  # the first answer opens the window
    clock.advance(RAILS.max_change_window_seconds - 1)

    served, against = cap.limit(key, anchor * factor)

    r = RAILS.max_change_relative
    expected = min(max(anchor * factor, anchor * (1 - r)), anchor * (1 + r))
    assert served == pytest.approx(expected)
    assert against == (anchor if expected != anchor * factor else None)


def test_change_cannot_creep_by_the_fraction_on_every_request():
    clock, anchor = ManualClock(), 100.0
    cap = limiter(clock)
    key = input_key(PATH, request_body())
    cap.limit(key, anchor)
    value = anchor
    for _ in range(10):  # a model drifting up 30 % per request, each step within the rail on its own
        clock.advance(60)
        value, _ = cap.limit(key, value * 1.3)
    assert value == pytest.approx(anchor * (1 + RAILS.max_change_relative))


def test_change_after_the_window_anchors_a_new_window():
    clock = ManualClock()
    cap = limiter(clock)
    key = input_key(PATH, request_body())
    cap.limit(key, 100.0)
    clock.advance(RAILS.max_change_window_seconds)
    assert cap.limit(key, 1000.0) == (1000.0, None)
    assert cap.limit(key, 100.0)[0] == pytest.approx(1000.0 * (1 - RAILS.max_change_relative))


def test_change_memory_is_per_input_and_bounded():
    clock = ManualClock()
    cap = limiter(clock, capacity=3)
    keys = [input_key(PATH, request_body(title=f"bicicleta {i}")) for i in range(4)]
    for key in keys:
        cap.limit(key, 100.0)
    assert len(cap) == 3
    assert cap.limit(keys[0], 1000.0) == (1000.0, None)  # forgotten (least recent): a fresh window
    assert cap.limit(keys[3], 1000.0)[0] == pytest.approx(100.0 * (1 + RAILS.max_change_relative))


def test_input_key_ignores_key_order_but_not_values():
    body = request_body()
    assert input_key(PATH, body) == input_key(PATH, dict(reversed(list(body.items()))))
    assert input_key(PATH, body) != input_key(PATH, request_body(country="PT"))


def test_app_new_version_moves_a_repeated_answer_at_most_the_fraction_within_the_window():
    clock = ManualClock()
    store = MemoryStore()
    store.add("v1", {"eur": 200.0})
    client = app_for(store, clock=clock).test_client()
    first = served(client)
    store.add("v2", {"eur": 500.0})

    again = served(client)
    other = served(client, request_body(title="Samsung Galaxy S22"))  # never answered before: no anchor
    clock.advance(RAILS.max_change_window_seconds)
    later = served(client)

    limit = 200.0 * (1 + RAILS.max_change_relative)
    assert first["prediction"]["suggested_price_eur"] == 200.0
    assert (again["version"], again["change_limited"], again["prediction"]["suggested_price_eur"]) == ("v2", True,
                                                                                                     limit)
    assert again["guard_rail"]["anchor"] == 200.0 and again["guard_rail"]["raw"] == 500.0
    assert (other["change_limited"], other["prediction"]["suggested_price_eur"]) == (False, 500.0)
    assert (later["change_limited"], later["prediction"]["suggested_price_eur"]) == (False, 500.0)


# -- canary / A-B routing ------------------------------------------------------------------------------------------
USERS = [f"usr_{i:06d}" for i in range(20_000)]


@pytest.mark.parametrize("share", [0.01, 0.05, 0.2, 0.5])
def test_canary_share_of_users_is_within_four_sigma_of_the_configured_share(share):
    canary = sum(routing.variant_for("price_suggestion", user, share) == routing.CANARY for user in USERS)
    n = len(USERS)
    sigma = math.sqrt(n * share * (1 - share))
    assert abs(canary - n * share) <= 4 * sigma, (canary, n * share, sigma)


def test_canary_assignment_is_sticky_and_only_grows_with_the_share():
    small = {u for u in USERS if routing.variant_for("price_suggestion", u, 0.05) == routing.CANARY}
    again = {u for u in USERS if routing.variant_for("price_suggestion", u, 0.05) == routing.CANARY}
    larger = {u for u in USERS if routing.variant_for("price_suggestion", u, 0.2) == routing.CANARY}
    assert small == again and small < larger


def test_canary_assignment_differs_between_models_and_spares_anonymous_users():
    price = {u for u in USERS if routing.variant_for("price_suggestion", u, 0.1) == routing.CANARY}
    other = {u for u in USERS if routing.variant_for("category_guess", u, 0.1) == routing.CANARY}
    assert price != other
    assert routing.variant_for("price_suggestion", None, 1.0) == routing.STABLE
    assert routing.variant_for("price_suggestion", "", 1.0) == routing.STABLE
    assert routing.variant_for("price_suggestion", USERS[0], 0.0) == routing.STABLE
    assert routing.variant_for("price_suggestion", USERS[0], 1.0) == routing.CANARY


def test_app_serves_the_canary_to_the_same_users_every_time_and_counts_per_variant():
    store = MemoryStore()
    store.add("canary-v", {"eur": 300.0}, point=False)
    store.add("stable-v", {"eur": 310.0})
    client = app_for(store, canary_version="canary-v", canary_share=0.3).test_client()
    users = USERS[:60]
    expected = {u: routing.variant_for("price_suggestion", u, 0.3) for u in users}

    answers = [(u, served(client, **{"X-User-Id": u})) for u in users * 2]
    anonymous = served(client)

    for user, answer in answers:
        assert answer["variant"] == expected[user]
        assert answer["version"] == ("canary-v" if expected[user] == routing.CANARY else "stable-v")
    assert anonymous["variant"] == routing.STABLE
    counters = client.get("/metrics").json["variants"]
    n_canary = 2 * sum(v == routing.CANARY for v in expected.values())
    assert counters["canary"]["requests"] == counters["canary"]["predictions"] == n_canary
    assert counters["stable"]["predictions"] == 2 * len(users) - n_canary + 1
    assert client.get("/health").json["served"]["canary"]["version"] == "canary-v"


# -- input checks --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, field, reason", [
    (request_body(title=None), "title", "missing_field"),
    (request_body(title="ab"), "title", "too_short"),
    (request_body(category="spaceships"), "category", "not_in_enum"),
    (request_body(country="spain"), "country", "pattern_mismatch"),
    ({**request_body(), "price": 12}, "price", "unknown_property"),
    ([request_body()], None, "invalid_type"),
])
def test_invalid_input_answers_400_naming_the_field_and_why_even_without_a_model(body, field, reason):
    client = app_for(MemoryStore()).test_client()  # nothing published: the check needs no model
    response = client.post(PATH, json=body)
    error = response.json["error"]
    assert response.status_code == 400 == error["status"]
    assert (error["code"], error.get("field"), error["details"]["reason"]) == ("invalid_input", field, reason)
    assert error["message"].startswith(f"{field}: " if field else "the body: ")
    if reason == "unknown_property":
        assert all(name in error["message"] for name in DEFINITION.endpoint(PATH).inputs)


def test_body_that_is_not_json_answers_400_in_the_one_error_shape():
    response = app_for(MemoryStore()).test_client().post(PATH, data=b"title=bike",
                                                          content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response.json["error"]["details"]["reason"] == "not_json" and "field" not in response.json["error"]


@pytest.mark.parametrize("method, path, status", [("get", PATH, 405), ("post", "/v1/nothing-here", 404)])
def test_unknown_routes_and_methods_answer_the_one_error_shape(method, path, status):
    response = getattr(app_for(MemoryStore()).test_client(), method)(path)
    assert response.status_code == status
    assert set(response.json["error"]) == {"status", "code", "message"} and response.json["error"]["status"] == status


# -- what leaves, what fails ---------------------------------------------------------------------------------------
def test_only_declared_outputs_leave_and_the_answer_names_version_and_variant():
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    response = app_for(store).test_client().post(PATH, json=request_body(currency="GBP"))
    body = response.json
    assert list(body["prediction"]) == list(DEFINITION.endpoint(PATH).outputs)
    assert body["prediction"]["suggested_price"] == pytest.approx(250.0 * 0.86)
    assert (body["model"], body["version"], body["variant"]) == ("price_suggestion", "v1", "stable")
    assert response.headers["X-Model-Version"] == "v1"


def test_predict_that_raises_answers_500_and_counts_an_error():
    store = MemoryStore()
    store.add("v1", {"eur": 1.0, "raise": "boom"})
    client = app_for(store).test_client()
    response = client.post(PATH, json=request_body())
    assert response.status_code == 500 and response.json["error"]["code"] == "prediction_failed"
    assert "boom" in response.json["error"]["message"]
    assert client.get("/metrics").json["variants"]["stable"]["errors"] == 1


def test_no_model_published_answers_503_and_health_says_so():
    client = app_for(MemoryStore()).test_client()
    response = client.post(PATH, json=request_body())
    assert response.status_code == 503 and response.json["error"]["code"] == "model_unavailable"
    health = client.get("/health")
    assert health.status_code == 503 and health.json["status"] == "no_model"


# -- kill switch and pinned versions -------------------------------------------------------------------------------
def test_kill_switch_in_the_store_answers_503_until_it_is_off():
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    client = app_for(store).test_client()
    store.killed = True
    off = client.post(PATH, json=request_body())
    store.killed = False
    on = client.post(PATH, json=request_body())
    assert off.status_code == 503 and off.json["error"]["code"] == "model_disabled"
    assert store.kill_switch_key("price_suggestion") in off.json["error"]["message"]
    assert on.status_code == 200


def test_a_malformed_kill_switch_is_refused_the_state_last_read_stays_and_health_says_why(monkeypatch):
    reported = []
    monkeypatch.setattr(service, "report_kill_switch_problem",
                        lambda model, exc, on: reported.append((exc.problem, on)))
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    client = app_for(store).test_client()
    malformed = InvalidKillSwitch("price_suggestion", "models/price_suggestion/kill_switch.json",
                                  "'on' must be true or false (a JSON boolean), not \"false\"")

    store.kill_switch_error = malformed  # served, then a malformed switch: still served, and /health says so
    store.add("v2", {"eur": 300.0})  # the pointer is still followed meanwhile
    served_meanwhile = served(client)
    invalid = client.get("/health")
    served(client)  # another check: the same problem is not reported twice
    store.kill_switch_error, store.killed = None, True  # a valid switch: off
    off = client.post(PATH, json=request_body())
    store.kill_switch_error = malformed  # off, then malformed: stays off
    still_off = client.post(PATH, json=request_body())
    health_off = client.get("/health").json
    store.kill_switch_error, store.killed = None, False
    on = served(client)

    assert served_meanwhile["version"] == "v2"
    assert invalid.status_code == 200 and invalid.json["status"] == "kill_switch_invalid"
    assert invalid.json["kill_switch"] == {"on": False, "store": False, "problem": malformed.problem,
                                           "env": {"name": RAILS.kill_switch_env, "on": False}}
    assert off.status_code == still_off.status_code == 503
    assert health_off["status"] == "disabled" and health_off["kill_switch"]["problem"] == malformed.problem
    assert on["version"] == "v2" and client.get("/health").json["kill_switch"]["problem"] is None
    assert client.get("/health").json["status"] == "ok"
    assert reported == [(malformed.problem, False), (malformed.problem, True)]


@pytest.mark.parametrize("value, disabled", [("1", True), ("true", True), ("tru", True), ("0", False), ("", False)])
def test_kill_switch_environment_variable_of_the_definition(value, disabled):
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    client = app_for(store, environ={RAILS.kill_switch_env: value}, allow_version_header=True).test_client()
    response = client.post(PATH, json=request_body())
    pinned = client.post(PATH, json=request_body(), headers={"X-Model-Version": "v1"})
    assert response.status_code == (503 if disabled else 200)
    if disabled:
        assert RAILS.kill_switch_env in response.json["error"]["message"]
    assert client.get("/health").json["kill_switch"]["on"] is disabled
    assert pinned.status_code == 200  # the validator / an operator can still check a version


def test_version_header_is_refused_unless_enabled_and_unknown_versions_are_404():
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    store.add("v2", {"eur": 900.0}, point=False)
    closed = app_for(store).test_client().post(PATH, json=request_body(), headers={"X-Model-Version": "v2"})
    client = app_for(store, allow_version_header=True).test_client()
    user = served(client)  # anchors this input's window at v1's answer
    pinned = served(client, **{"X-Model-Version": "v2"})
    unknown = client.post(PATH, json=request_body(), headers={"X-Model-Version": "v9"})
    user_again = served(client)

    assert closed.status_code == 403 and closed.json["error"]["code"] == "version_header_disabled"
    assert (pinned["version"], pinned["variant"], pinned["prediction"]["suggested_price_eur"]) == ("v2", "pinned",
                                                                                                   900.0)
    assert pinned["change_limited"] is False  # the validator sees what the version really answers
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "unknown_version"
    assert user["version"] == user_again["version"] == "v1"
    assert user_again["prediction"] == user["prediction"] and user_again["change_limited"] is False


# -- reloads -------------------------------------------------------------------------------------------------------
def test_pointer_is_checked_at_most_every_reload_seconds():
    clock = ManualClock()
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    client = app_for(store, reload_seconds=60, clock=clock).test_client()
    store.add("v2", {"eur": 260.0})
    before = served(client)["version"]
    clock.advance(59)
    still = served(client)["version"]
    clock.advance(1)
    client.get("/health")  # any request may start the check
    after = served(client)["version"]
    assert (before, still, after) == ("v1", "v1", "v2")
    assert store.loads == ["v1", "v2"]


def test_failed_reload_keeps_the_previous_version_and_is_reported_in_health():
    store = MemoryStore()
    store.add("v1", {"eur": 250.0})
    client = app_for(store).test_client()
    store.add("v2", {"eur": 260.0})
    original = store.load

    def tampered(model, version=None, *, trusted_types):
        if (version or store.pointer.version) == "v2":
            raise ChecksumMismatch(model, "v2", "a" * 64, "b" * 64)
        return original(model, version, trusted_types=trusted_types)

    store.load = tampered
    answer = served(client)
    health = client.get("/health").json
    assert answer["version"] == "v1"
    assert health["served"]["stable"]["version"] == "v1"
    assert (health["reload"]["problem"]["version"], health["reload"]["problem"]["error"]) == ("v2",
                                                                                              "ChecksumMismatch")
    assert health["reload"]["failures"] >= 1


# -- configuration -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("environ, variable", [
    ({"CANARY_SHARE": "0.1"}, "CANARY_VERSION"),
    ({"CANARY_SHARE": "1.5", "CANARY_VERSION": "v1"}, "CANARY_SHARE"),
    ({"CANARY_SHARE": "ten"}, "CANARY_SHARE"),
    ({"RELOAD_SECONDS": "-1"}, "RELOAD_SECONDS"),
    ({"ALLOW_VERSION_HEADER": "maybe"}, "ALLOW_VERSION_HEADER"),
    ({"PINNED_CACHE_SIZE": "0"}, "PINNED_CACHE_SIZE"),
])
def test_config_from_environ_names_the_variable_it_refuses(environ, variable):
    with pytest.raises(ConfigError) as refused:
        ServingConfig.from_environ(environ)
    assert refused.value.where == variable


def test_config_from_environ_reads_every_setting():
    config = ServingConfig.from_environ({"CANARY_VERSION": "v7", "CANARY_SHARE": "0.05", "RELOAD_SECONDS": "5",
                                         "ALLOW_VERSION_HEADER": "1", "USER_ID_HEADER": "X-Letgo-User",
                                         "BACKGROUND_RELOAD": "off"})
    assert (config.canary_version, config.canary_share, config.reload_seconds, config.allow_version_header,
            config.user_id_header, config.background_reload) == ("v7", 0.05, 5.0, True, "X-Letgo-User", False)


@pytest.mark.parametrize("missing", ["MODEL_DEFINITION", "MODELS_BUCKET"])
def test_wsgi_build_names_the_missing_variable(missing):
    environ = {"MODEL_DEFINITION": "models/price_suggestion.yaml", "MODELS_BUCKET": "models"}
    del environ[missing]
    with pytest.raises(ConfigError) as refused:
        build(environ)
    assert refused.value.where == missing


# -- SigV4 signing of the validator's requests ---------------------------------------------------------------------
def test_sigv4_signer_signs_the_exact_body_for_the_service_and_region():
    signer = SigV4Signer("eu-west-1", service="execute-api", credentials=Credentials("AKIDEXAMPLE", "secret", "tok"))
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/v1/price-suggestion"
    headers = {"Content-Type": "application/json", "X-Model-Version": "v1"}
    one = signer.sign("POST", url, headers, b'{"title": "bike"}')
    two = signer.sign("POST", url, headers, b'{"title": "bikes"}')

    authorization = one["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    assert "x-model-version" in authorization.split("SignedHeaders=")[1]
    assert one["X-Amz-Security-Token"] == "tok"
    assert authorization.split("Signature=")[1] != two["Authorization"].split("Signature=")[1]
