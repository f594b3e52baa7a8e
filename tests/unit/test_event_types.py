"""Event-type catalog: the shipped files load, and every kind of broken file stops start-up precisely."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from handlers.schema.errors import DefinitionError
from handlers.schema.event_types import load_catalog

pytestmark = pytest.mark.unit

EVENT_TYPES = Path(__file__).resolve().parents[2] / "event_types"
SHIPPED = {"AppOpened", "Identify", "ItemDeleted", "ItemListed", "ItemSold", "ItemUpdated", "ItemViewed",
           "Lead", "Screen", "Search", "UserSignedUp"}


@pytest.fixture
def types_dir(tmp_path):
    return Path(shutil.copytree(EVENT_TYPES, tmp_path / "event_types"))


def edit(directory: Path, filename: str, old: str, new: str) -> None:
    path = directory / filename
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur exactly once in {filename}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_load_catalog_shipped_files_loads_all_types():
    catalog = load_catalog(EVENT_TYPES)
    assert set(catalog.types) == SHIPPED
    assert catalog.get("ItemListed").properties["category"]["type"] == "enum"  # resolved from _shared.yaml
    assert catalog.get("Lead").properties["item_id"]["pattern"] == "^[A-Za-z0-9_-]+$"
    assert catalog.get("NoSuchType") is None


@pytest.mark.parametrize(("filename", "old", "new", "field", "phrase"), [
    pytest.param("ItemListed.yaml", "image_count: {type: integer,", "image_count: {type: intger,",
                 "properties.image_count.type", "unknown type 'intger'", id="unknown-field-type"),
    pytest.param("Lead.yaml", "channel: {type: enum, values: [chat, offer, call], required: true}",
                 "channel: {type: enum, required: true}",
                 "properties.channel.values", "non-empty list", id="enum-without-values"),
    pytest.param("ItemListed.yaml", "name: ItemListed", "name: ItemPublished",
                 "name", "must match the file name", id="name-not-matching-file"),
    pytest.param("Lead.yaml", "version: 1\n", "",
                 "version", "positive integer", id="missing-version"),
    pytest.param("UserSignedUp.yaml", 'pattern: "^[^@\\\\s]+@[^@\\\\s]+\\\\.[^@\\\\s]+$"', 'pattern: "([a-z"',
                 "properties.email.pattern", "not a valid regular expression", id="bad-regex"),
    pytest.param("UserSignedUp.yaml", "referral_code: {type: string, max_length: 32}",
                 "referral_code: {type: string, min: 3, max_length: 32}",
                 "properties.referral_code", "unknown key(s) ['min'] for type string", id="unknown-key-for-type"),
    pytest.param("UserSignedUp.yaml", "country: {shared: country, required: true}",
                 "country: {shared: nation, required: true}",
                 "properties.country.shared", "no shared field 'nation'", id="unknown-shared-reference"),
    pytest.param("Lead.yaml", "properties:\n", "properties: [\n", None, "not valid YAML", id="invalid-yaml"),
    pytest.param("ItemListed.yaml", "image_count: {type: integer, min: 0, max: 30}",
                 "image_count: {type: integer, min: 40, max: 30}",
                 "properties.image_count", "min is above max", id="min-above-max"),
])
def test_load_catalog_broken_file_raises_definition_error(types_dir, filename, old, new, field, phrase):
    edit(types_dir, filename, old, new)
    with pytest.raises(DefinitionError) as excinfo:
        load_catalog(types_dir)
    exc = excinfo.value
    assert (exc.filename, exc.field) == (filename, field)
    assert phrase in exc.message
    assert str(exc).startswith(filename)


def test_load_catalog_new_type_file_without_lock_entry_loads(types_dir):
    (types_dir / "ItemFavourited.yaml").write_text(
        "name: ItemFavourited\nversion: 1\ndescription: A buyer saved a listing.\nproperties:\n"
        "  item_id: {shared: item_id, required: true}\n  source: {type: enum, values: [search, feed]}\n",
        encoding="utf-8")
    catalog = load_catalog(types_dir)
    assert set(catalog.types) == SHIPPED | {"ItemFavourited"}
    new = catalog.get("ItemFavourited")
    assert new.version == 1 and new.filename == "ItemFavourited.yaml"
    assert new.properties["item_id"]["required"] is True and new.properties["item_id"]["max_length"] == 64
