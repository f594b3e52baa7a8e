"""The rules every definition file is read with (handlers/schema/rules.py, paths.py): one duration syntax, keys,
field paths against the event types, and one error shape — ``<file>: <field>: <why>``."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from handlers.core.config import ConfigError, Env
from handlers.schema.errors import DefinitionError
from handlers.schema.event_types import load_catalog
from handlers.schema.paths import field_spec
from handlers.schema.rules import duration, known_keys, read_yaml, required_keys

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("24h", 86400), ("30d", 2592000),
                                               ("1s", 1)])
def test_duration_valid_returns_seconds(text, seconds):
    assert duration(text, "f.yaml", "checks.max_past") == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1.5h", "-3d", "10w", "15 m", "24H", "24h ", " 24h", "24h\n",
                                  "1h30m", None, 30, True])
def test_duration_invalid_raises_naming_file_and_field(text):
    with pytest.raises(DefinitionError) as excinfo:
        duration(text, "f.yaml", "checks.max_past")
    assert (excinfo.value.filename, excinfo.value.field) == ("f.yaml", "checks.max_past")
    assert "is not a duration like 90s, 15m, 24h or 30d" in excinfo.value.message
    assert str(excinfo.value).startswith("f.yaml: checks.max_past: ")


def test_duration_zero_only_where_the_field_allows_it():
    assert duration("0s", "f.yaml", "checks.max_future", minimum=0) == 0
    with pytest.raises(DefinitionError, match="shorter than 1 s"):
        duration("0m", "m.yaml", "window")


def test_a_variable_reads_durations_in_the_same_syntax():
    assert Env({"TTL": "15m"}).duration("TTL", 0) == 900
    with pytest.raises(ConfigError, match="not a duration like 90s, 15m, 24h or 30d"):
        Env({"TTL": "15 m"}).duration("TTL", 0)


def _durations(node):
    """Every value of a key naming a duration in a parsed YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("window", "absent_for", "max_future", "max_past"):
                yield value
            else:
                yield from _durations(value)
    elif isinstance(node, list):
        for item in node:
            yield from _durations(item)


def test_every_shipped_duration_is_in_the_one_syntax():
    files = [*REPO.glob("metrics/*.yaml"), *REPO.glob("models/*.yaml"), *REPO.glob("config/*.yaml")]
    found = [(path.name, value) for path in files for value in _durations(yaml.safe_load(path.read_text()))]
    assert len(found) >= 10
    for filename, value in found:
        assert duration(value, filename, "x") > 0


def test_known_and_required_keys_name_the_mapping_and_the_missing_key():
    with pytest.raises(DefinitionError) as unknown:
        known_keys({"type": "Lead", "wher": {}}, ("type", "where"), "m.yaml", "events")
    assert str(unknown.value) == "m.yaml: events: unknown key(s) ['wher']; known: ['type', 'where']"
    with pytest.raises(DefinitionError) as missing:
        required_keys({"type": "Lead"}, ("type", "where"), "m.yaml", "events")
    assert str(missing.value) == "m.yaml: events.where: required"
    with pytest.raises(DefinitionError) as top:
        required_keys({}, ("name",), "m.yaml")
    assert str(top.value) == "m.yaml: name: required"


def test_read_yaml_names_the_file(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(DefinitionError, match=r"^broken\.yaml: not valid YAML"):
        read_yaml(tmp_path / "broken.yaml")
    with pytest.raises(DefinitionError, match=r"^missing\.yaml: cannot read the file"):
        read_yaml(tmp_path / "missing.yaml")
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DefinitionError, match=r"^latin1\.yaml: not valid YAML"):
        read_yaml(tmp_path / "latin1.yaml")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(REPO / "event_types")


def test_field_spec_resolves_properties_and_context(catalog):
    lead = catalog.get("Lead")
    assert field_spec("properties.channel", lead, catalog, "m.yaml", "group_by[0]", no_pii="-")["type"] == "enum"
    assert field_spec("context.os.name", None, catalog, "m.yaml", "group_by[0]", no_pii="-")["type"] == "string"


@pytest.mark.parametrize(("path", "reason"), [
    ("properties.colour", "no field 'colour' under properties in event type Lead (Lead.yaml)"),
    ("context.os.flavour", "no field 'flavour' under context.os in _context.yaml"),
    ("context.ip", "is personal data (pii): why not"),
    ("properties.channel.sub", "properties.channel is a enum, not an object"),
])
def test_field_spec_refuses_naming_file_and_field(catalog, path, reason):
    with pytest.raises(DefinitionError) as error:
        field_spec(path, catalog.get("Lead"), catalog, "m.yaml", "group_by[0]", no_pii="why not")
    assert (error.value.filename, error.value.field) == ("m.yaml", "group_by[0]")
    assert reason in error.value.message
