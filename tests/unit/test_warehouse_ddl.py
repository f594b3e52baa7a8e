"""Redshift DDL from the event types (letgo/warehouse/ddl.py): it parses as Redshift SQL, matches the YAML,
lines up with the Firehose documents, evolves additively, refuses breaking changes, and `--check` guards the
committed migrations/redshift/ folder."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import orjson
import pytest
import sqlglot
from sqlglot import exp

from handlers.schema.errors import DefinitionError
from handlers.schema.event_types import EventType, load_catalog
from handlers.tracking.processor import Event
from handlers.warehouse import loader
from letgo.warehouse import ddl

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EVENT_TYPES = ROOT / "event_types"
MIGRATIONS = ROOT / "migrations" / "redshift"
CATALOG = load_catalog(EVENT_TYPES)
TYPES = sorted(CATALOG.types)
LISTED = "ItemListed.yaml"
BUMP = ("version: 1\n", "version: 2\n")
ADD_OPTIONAL = ("  shipping_available: {type: boolean}\n",
                "  shipping_available: {type: boolean}\n  promoted: {type: boolean}\n")


def parse_one(sql: str) -> exp.Expression:
    """One statement, parsed by sqlglot's redshift dialect into a real syntax tree.

    sqlglot (30.x) understands every clause we generate — SUPER, DISTSTYLE/SORTKEY, STRUCT<…>/ARRAY<…>,
    PARTITIONED BY, ROW FORMAT SERDE, STORED AS, WITH NO SCHEMA BINDING, ALTER … ADD/DROP/ALTER COLUMN,
    COPY … IAM_ROLE … FORMAT AS JSON — so nothing is stripped. It silently falls back to an opaque
    ``Command`` for syntax it does not know, which would pass a bare "no error" test: refuse that.
    """
    statements = [s for s in sqlglot.parse(sql, read="redshift") if s is not None]
    assert len(statements) == 1, sql
    assert not isinstance(statements[0], exp.Command), f"sqlglot did not understand:\n{sql}"
    return statements[0]


def types_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EVENT_TYPES, tmp_path / "event_types"))


def edit(directory: Path, filename: str, *replacements: tuple[str, str]) -> None:
    path = directory / filename
    text = path.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} must occur exactly once in {filename}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def with_properties(event_type: EventType, properties: dict) -> EventType:
    return EventType(name=event_type.name, version=event_type.version + 1, description=event_type.description,
                     filename=event_type.filename, properties=properties)


# -- parses as Redshift ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TYPES)
def test_generated_statements_parse_as_redshift(name):
    event_type = CATALOG.get(name)
    table = ddl.table_name(event_type)
    created = parse_one(ddl.create_table(event_type))
    assert isinstance(created, exp.Create) and created.args["kind"] == "TABLE"
    assert created.this.this.sql() == f"events.{table}"
    external = parse_one(ddl.external_table(event_type))
    assert isinstance(external, exp.Create) and "EXTERNAL" in external.sql("redshift")
    view = parse_one(ddl.union_view(event_type))
    assert isinstance(view, exp.Create) and view.args["kind"] == "VIEW"
    assert isinstance(view.expression, exp.Union)
    spec, obj = _load_spec_and_object(event_type)
    assert isinstance(parse_one(loader.partition_statement(obj, spec)), exp.Alter)
    parsed = [None] + [parse_one(s) for s in loader.load_statements(obj, spec, "arn:aws:iam::1:role/copy")[1:]]
    assert [type(s) for s in parsed][1:] == [exp.Create, exp.Copy, exp.Delete, exp.Insert, exp.Drop]
    # sqlglot has no LOCK
    assert loader.load_statements(obj, spec, "r")[0] == f"LOCK events.{ddl.table_name(event_type)}"
    assert isinstance(parse_one(loader.expire_statement(spec, 30)), exp.Delete)


def _load_spec_and_object(event_type):
    spec = loader.LoadSpec.from_document(ddl.load_spec(event_type, "processed", "0001_initial"))
    return spec, loader.parse_key("processed", f"events/type={event_type.name}/dt=2026-11-26/part-1.gz")


def test_committed_initial_migration_parses_statement_by_statement():
    text = (MIGRATIONS / "0001_initial.sql").read_text(encoding="utf-8")
    statements = [s for s in sqlglot.parse(text, read="redshift") if s is not None]
    assert len(statements) == 3 + 3 * len(TYPES)
    opaque = [s for s in statements if isinstance(s, exp.Command)]
    # CREATE EXTERNAL SCHEMA … FROM DATA CATALOG is the one statement sqlglot keeps as an opaque Command
    # (it has no model of it): it is checked textually here instead.
    assert [s.sql("redshift") for s in opaque] == [ddl.external_schema()]
    kinds = [(s.args.get("kind"), "EXTERNAL" in s.sql("redshift")) for s in statements if isinstance(s, exp.Create)]
    assert kinds.count(("TABLE", False)) == kinds.count(("TABLE", True)) == kinds.count(("VIEW", False)) == len(TYPES)


# -- matches the YAML ------------------------------------------------------------------------------------------
def expected_type(spec: dict) -> str:
    kind = spec["type"]
    if kind == "string":
        return f"VARCHAR({min(4 * spec['max_length'], 65535)})"
    if kind == "enum":
        return f"VARCHAR({4 * max(len(v) for v in spec['values'])})"
    return {"integer": "BIGINT", "number": "DOUBLE PRECISION", "boolean": "BOOLEAN", "timestamp": "TIMESTAMP",
            "object": "SUPER", "list": "SUPER"}[kind]


@pytest.mark.parametrize("name", TYPES)
def test_columns_match_the_yaml(name):
    event_type = CATALOG.get(name)
    columns = ddl.columns(event_type)
    by_path = {c.json_path: c for c in columns}
    assert len(by_path) == len(columns) and len({c.name for c in columns}) == len(columns)
    assert [c.name for c in columns[:8]] == ["message_id", "event_time", "received_at", "sent_at", "user_id",
                                             "anonymous_id", "schema_version", "context"]
    assert [c.nullable for c in columns[:2]] == [False, False] and all(c.nullable for c in columns[2:])
    expected_paths = []
    for prop, spec in event_type.properties.items():
        if spec["type"] == "geo_point":
            for part in ("lat", "lon"):
                column = by_path[f"$.properties.{prop}.{part}"]
                assert (column.name, column.redshift_type) == (f"{prop}_{part}", "DOUBLE PRECISION")
                expected_paths.append(column.json_path)
        else:
            column = by_path[f"$.properties.{prop}"]
            assert column.redshift_type == expected_type(spec), prop
            assert column.name in (prop, f"prop_{prop}")
            assert (column.name == f"prop_{prop}") == (prop in ddl.RESERVED or prop in ddl.ENVELOPE_NAMES)
            expected_paths.append(column.json_path)
    assert [c.json_path for c in columns[8:]] == expected_paths  # YAML order, nothing extra
    # the CREATE TABLE declares exactly these columns with these types
    created = parse_one(ddl.create_table(event_type))
    declared = {d.this.name: d.args["kind"].sql("redshift") for d in created.this.expressions}
    assert declared == {c.name: c.redshift_type for c in columns}


def test_columns_examples_from_the_shipped_types():
    listed = {c.name: c for c in ddl.columns(CATALOG.get("ItemListed"))}
    assert listed["location_lat"].json_path == "$.properties.location.lat"
    assert listed["title"].redshift_type == "VARCHAR(480)"  # max_length 120 characters, bytes counted
    assert listed["category"].redshift_type == "VARCHAR(56)"  # longest value sports_leisure (14)
    assert listed["prop_language"].json_path == "$.properties.language"  # LANGUAGE is reserved in Redshift
    assert listed["description"].redshift_type == "VARCHAR(16000)"
    assert listed["event_time"].json_path == "$.timestamp"
    assert ddl.table_name(CATALOG.get("UserSignedUp")) == "user_signed_up"
    assert ddl.columns(CATALOG.get("Search"))[-3].redshift_type == "SUPER"  # filters: object


def test_colliding_column_names_are_refused():
    event_type = EventType(name="Weird", version=1, description="d", filename="Weird.yaml", properties={
        "spot": {"type": "geo_point", "required": False, "pii": False},
        "spot_lat": {"type": "number", "required": False, "pii": False}})
    with pytest.raises(DefinitionError, match="spot_lat"):
        ddl.columns(event_type)


# -- lines up with what Firehose writes --------------------------------------------------------------------------
def resolve(document: dict, path: str):
    value = document
    for key in path[2:].split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def test_jsonpaths_line_up_with_columns_and_the_firehose_document():
    event_type = CATALOG.get("ItemListed")
    properties = {"item_id": "it-1", "seller_id": "u-2", "title": "Bike", "category": "bikes", "price": 200.5,
                  "currency": "EUR", "location": {"lat": 40.4, "lon": -3.7}, "country": "ES", "language": "es",
                  "image_count": 3}
    event = Event("m-1", "ItemListed", 1, "2026-11-26T10:00:00.123Z", 0.0, "2026-11-26T10:00:01.000Z", None,
                  "u-1", None, {"locale": "es-ES"}, properties, "1")
    document = orjson.loads(event.to_json())
    columns = ddl.columns(event_type)
    paths = ddl.jsonpaths(event_type)["jsonpaths"]
    assert paths == [c.json_path for c in columns]
    values = {c.name: resolve(document, p) for c, p in zip(columns, paths)}
    assert values["message_id"] == "m-1" and values["event_time"] == "2026-11-26T10:00:00.123Z"
    assert values["schema_version"] == 1 and values["context"] == {"locale": "es-ES"}
    assert (values["location_lat"], values["location_lon"], values["price"]) == (40.4, -3.7, 200.5)
    assert values["prop_language"] == "es" and values["city"] is None  # absent optional property -> NULL
    spec, obj = _load_spec_and_object(event_type)
    copy = parse_one(loader.load_statements(obj, spec, "arn:aws:iam::1:role/copy")[2])
    assert [c.name for c in copy.this.expressions] == [c.name for c in columns]  # the list pairs with jsonpaths
    assert "'s3://processed/events/type=ItemListed/dt=2026-11-26/part-1.gz'" in copy.sql("redshift")
    assert spec.jsonpaths == "s3://processed/warehouse/jsonpaths/item_listed.json"


def test_union_view_selects_the_same_columns_on_both_sides():
    event_type = CATALOG.get("Search")
    union = parse_one(ddl.union_view(event_type, cluster_days=7)).expression
    names = [c.name for c in ddl.columns(event_type)]
    assert [s.alias_or_name for s in union.this.expressions] == names
    assert [s.alias_or_name for s in union.expression.expressions] == names
    history = {s.alias_or_name: s.this.sql("redshift") for s in union.expression.expressions}
    assert history["location_lat"] == "h.properties.location.lat"
    assert history["filters"] == "CAST(NULL AS SUPER)" and history["event_time"] == 'h."timestamp"'
    assert "-7" in union.this.args["where"].sql() and "-7" in union.expression.args["where"].sql()


# -- evolution -------------------------------------------------------------------------------------------------
def test_additive_change_adds_a_nullable_column(tmp_path):
    directory = types_dir(tmp_path)
    edit(directory, LISTED, ADD_OPTIONAL, BUMP)
    new = load_catalog(directory).get("ItemListed")
    old = CATALOG.get("ItemListed").properties
    statements = ddl.evolve(old, new.properties, new)
    for sql in statements:
        parse_one(sql)
    assert statements[0] == "ALTER TABLE events.item_listed ADD COLUMN promoted BOOLEAN"
    assert statements[1:3] == ["ALTER TABLE history.item_listed DROP COLUMN properties",
                               f"ALTER TABLE history.item_listed ADD COLUMN properties {ddl._struct(new.properties)}"]
    assert "promoted:BOOLEAN" in statements[2]
    assert statements[3].startswith("CREATE OR REPLACE VIEW analytics.item_listed") and "e.promoted" in statements[3]
    assert len(statements) == 4
    assert ddl.evolve(old, old, CATALOG.get("ItemListed")) == []


def test_looser_string_limit_widens_the_varchar():
    listed = CATALOG.get("ItemListed")
    properties = {**listed.properties, "city": {**listed.properties["city"], "max_length": 500}}
    statements = ddl.evolve(listed.properties, properties, with_properties(listed, properties))
    assert statements[0] == "ALTER TABLE events.item_listed ALTER COLUMN city TYPE VARCHAR(2000)"
    for sql in statements:
        parse_one(sql)


@pytest.mark.parametrize(("change", "phrase"), [
    pytest.param(lambda p: {k: v for k, v in p.items() if k != "city"}, "properties.city was removed",
                 id="property-removed"),
    pytest.param(lambda p: {**p, "image_count": {**p["image_count"], "type": "number"}},
                 "properties.image_count changed type integer -> number", id="type-changed"),
    pytest.param(lambda p: {**p, "city": {**p["city"], "max_length": 60}},
                 "properties.city.max_length tightened 120 -> 60", id="narrowed"),
])
def test_breaking_change_is_refused_naming_it(change, phrase):
    listed = CATALOG.get("ItemListed")
    properties = change(dict(listed.properties))
    with pytest.raises(DefinitionError) as excinfo:
        ddl.evolve(listed.properties, properties, with_properties(listed, properties))
    assert excinfo.value.filename == LISTED and phrase in excinfo.value.message
    assert "add a new event type" in excinfo.value.message


# -- migration files and --check ---------------------------------------------------------------------------------
COMMITTED = ["0001_initial.sql", "0002_application_users.sql", "state.json"]


def migrations_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(MIGRATIONS, tmp_path / "redshift"))


def test_committed_folder_is_up_to_date_and_check_passes(capsys):
    assert ddl.generate_migrations(CATALOG, ddl.read_state(MIGRATIONS), MIGRATIONS, write=False) is None
    assert ddl.main(["--check"]) == 0
    assert json.loads((MIGRATIONS / "state.json").read_text())["types"] == ddl.state_document(CATALOG.types)


def test_check_fails_after_additive_change_then_generation_writes_the_next_file(tmp_path, capsys):
    directory, out = types_dir(tmp_path), migrations_copy(tmp_path)
    edit(directory, LISTED, ADD_OPTIONAL, BUMP)
    args = ["--event-types", str(directory), "--out", str(out)]
    assert ddl.main(["--check", *args]) == 1
    assert "missing migration 0003_item_listed_v2.sql" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == COMMITTED  # --check writes nothing
    assert ddl.main(args) == 0
    written = (out / "0003_item_listed_v2.sql").read_text(encoding="utf-8")
    statements = sqlglot.parse(written, read="redshift")
    assert all(not isinstance(s, exp.Command) for s in statements) and len(statements) == 4
    assert "ALTER TABLE events.item_listed ADD COLUMN promoted BOOLEAN;" in written
    assert ddl.main(["--check", *args]) == 0
    assert json.loads((out / "state.json").read_text())["types"]["ItemListed"]["version"] == 2


def test_new_event_type_gets_its_tables_in_the_next_file(tmp_path):
    directory, out = types_dir(tmp_path), migrations_copy(tmp_path)
    (directory / "ItemReported.yaml").write_text(
        "name: ItemReported\nversion: 1\ndescription: A user reported a listing.\nproperties:\n"
        "  item_id: {shared: item_id, required: true}\n"
        "  reason: {type: enum, values: [scam, offensive, other], required: true}\n"
        "  reporter_location: {type: geo_point}\n", encoding="utf-8")
    migration = ddl.generate_migrations(load_catalog(directory), ddl.read_state(out), out)
    assert migration.name == "0003_item_reported_new"
    assert "CREATE TABLE IF NOT EXISTS events.item_reported (" in migration.sql
    assert "reporter_location_lat DOUBLE PRECISION" in migration.sql


def test_generation_refuses_a_breaking_yaml_change(tmp_path, capsys):
    directory, out = types_dir(tmp_path), migrations_copy(tmp_path)
    edit(directory, LISTED, ("  city: {type: string, max_length: 120}\n", ""), BUMP)
    with pytest.raises(DefinitionError, match="properties.city was removed"):
        ddl.generate_migrations(load_catalog(directory, check_lock=False), ddl.read_state(out), out)
    assert ddl.main(["--event-types", str(directory), "--out", str(out)]) == 2  # the lock refuses it first
    assert "properties.city was removed" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == COMMITTED


def test_empty_folder_gets_the_initial_migration(tmp_path):
    migration = ddl.generate_migrations(CATALOG, None, tmp_path / "redshift")
    assert migration.name == "0001_initial"
    assert (tmp_path / "redshift" / "0001_initial.sql").read_text() == (MIGRATIONS / "0001_initial.sql").read_text()


def test_generating_into_an_empty_folder_writes_the_committed_files(tmp_path, capsys):
    """`python -m letgo.warehouse.ddl` (what the committed folder came from): the tables, then the users."""
    out = tmp_path / "redshift"
    assert ddl.main(["--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == COMMITTED
    for name in COMMITTED:
        assert (out / name).read_text() == (MIGRATIONS / name).read_text(), name
    assert ddl.main(["--check", "--out", str(out)]) == 0


# -- application users -------------------------------------------------------------------------------------------
# Checked as text: no Redshift runs here (sqlglot keeps CREATE USER / GRANT as opaque commands), so these tests
# prove what the migration says, not that Redshift accepts it or that the loader then succeeds on a cluster.
USERS_FILE = MIGRATIONS / "0002_application_users.sql"


def committed_user_statements() -> list[str]:
    from letgo.ops.redshift_migrations import split_statements

    return split_statements(USERS_FILE.read_text(encoding="utf-8"))


def test_the_loader_user_is_created_without_a_password_and_holds_exactly_its_grants():
    statements = committed_user_statements()
    assert statements == ddl.application_users()["letgo_loader"]
    assert json.loads((MIGRATIONS / "state.json").read_text())["users"] == ddl.application_users()
    assert statements[0] == "CREATE USER letgo_loader PASSWORD DISABLE"  # IAM (GetClusterCredentials) only
    assert not [s for s in statements if re.search(r"\bPASSWORD\s+'", s, re.I)]
    grants = " ".join(" ".join(s.split()) for s in statements[1:])
    for expected in ("GRANT USAGE ON SCHEMA events TO letgo_loader",
                     "GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA events TO letgo_loader",
                     "ALTER DEFAULT PRIVILEGES FOR USER letgo_admin IN SCHEMA events GRANT SELECT, INSERT, DELETE "
                     "ON TABLES TO letgo_loader",
                     "GRANT TEMP ON DATABASE warehouse TO letgo_loader",
                     "GRANT ASSUMEROLE ON '{spectrum_role_arn}' TO letgo_loader FOR COPY",
                     "ALTER SCHEMA history OWNER TO letgo_loader"):
        assert expected in grants, expected
    assert len(statements) == 7  # nothing more than the above


def test_nothing_is_granted_all_nor_more_than_the_loader_runs():
    text = " ".join(committed_user_statements()).upper()
    assert not re.search(r"\bALL\s+(PRIVILEGES\b|ON\s+(?!TABLES\s+IN\s+SCHEMA))", text)  # only "ALL TABLES IN"
    for never in ("UPDATE", "TRUNCATE", "DROP", "CREATE ON", "ANALYTICS", "PUBLIC", "SUPERUSER", "CREATEUSER",
                  "WITH GRANT OPTION", "LETGO_ADMIN TO"):
        assert never not in text, never
    # each privilege on the cluster tables is used by a statement the loader sends
    obj = loader.parse_key("processed", "events/type=Lead/dt=2026-11-26/part-1.gz")
    spec, _ = _load_spec_and_object(CATALOG.get("Lead"))
    sent = " ".join([*loader.load_statements(obj, spec, "arn:role"), loader.expire_statement(spec, 30),
                     loader.partition_statement(obj, spec)])
    for verb in ("SELECT", "INSERT INTO events.lead", "DELETE FROM events.lead", "CREATE TEMP TABLE", "COPY",
                 "ALTER TABLE history.lead ADD IF NOT EXISTS PARTITION"):
        assert verb in sent, verb


def test_the_users_match_what_the_redshift_layer_deploys():
    template = (ROOT / "layers" / "redshift" / "resources.yaml.j2").read_text()
    assert f'{{% set loader_db_user = "{ddl.LOADER_USER}" %}}' in template
    assert f'{{% set database = "{ddl.DATABASE}" %}}' in template
    assert f"MasterUsername: {ddl.MIGRATION_USER}\n" in template  # whose default privileges the grants extend


def test_a_new_grant_is_the_next_migration_and_a_removed_one_is_refused(tmp_path, monkeypatch):
    out = migrations_copy(tmp_path)
    wanted = ddl.application_users()
    monkeypatch.setattr(ddl, "application_users",
                        lambda: {**wanted, "letgo_loader": [*wanted["letgo_loader"], "GRANT X TO letgo_loader"]})
    migration = ddl.generate_migrations(CATALOG, ddl.read_state(out), out)
    assert migration.name == "0003_application_users"
    assert ddl._render(["GRANT X TO letgo_loader"], "application users: letgo_loader") == migration.sql
    assert ddl.generate_migrations(CATALOG, ddl.read_state(out), out) is None
    monkeypatch.setattr(ddl, "application_users", lambda: wanted)
    with pytest.raises(DefinitionError, match="statement removed from an applied user: 'GRANT X TO letgo_loader'"):
        ddl.generate_migrations(CATALOG, ddl.read_state(out), out)
