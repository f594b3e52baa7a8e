"""Schema evolution against schema.lock.json: additive changes with a version bump pass, breaking ones don't."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from handlers.schema.compatibility import breaking_changes
from handlers.schema.errors import DefinitionError
from handlers.schema.event_types import load_catalog

pytestmark = pytest.mark.unit

EVENT_TYPES = Path(__file__).resolve().parents[2] / "event_types"
LISTED = "ItemListed.yaml"
BUMP = ("version: 1\n", "version: 2\n")
ADD_OPTIONAL = ("  shipping_available: {type: boolean}\n",
                "  shipping_available: {type: boolean}\n  promoted: {type: boolean}\n")


@pytest.fixture
def types_dir(tmp_path):
    directory = Path(shutil.copytree(EVENT_TYPES, tmp_path / "event_types"))
    assert (directory / "schema.lock.json").exists()
    return directory


def edit(directory: Path, filename: str, *replacements: tuple[str, str]) -> None:
    path = directory / filename
    text = path.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} must occur exactly once in {filename}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def test_check_lock_optional_property_with_bump_passes(types_dir):
    edit(types_dir, LISTED, ADD_OPTIONAL, BUMP)
    event_type = load_catalog(types_dir).get("ItemListed")
    assert event_type.version == 2 and "promoted" in event_type.properties


def test_check_lock_optional_property_without_bump_asks_to_bump(types_dir):
    edit(types_dir, LISTED, ADD_OPTIONAL)
    with pytest.raises(DefinitionError) as excinfo:
        load_catalog(types_dir)
    assert (excinfo.value.filename, excinfo.value.field) == (LISTED, "version")
    assert "bump it to 2" in excinfo.value.message


def test_check_lock_loosened_max_with_bump_passes(types_dir):
    edit(types_dir, LISTED, ("image_count: {type: integer, min: 0, max: 30}",
                             "image_count: {type: integer, min: 0, max: 60}"), BUMP)
    assert load_catalog(types_dir).get("ItemListed").properties["image_count"]["max"] == 60


@pytest.mark.parametrize(("filename", "change", "field", "phrase"), [
    pytest.param(LISTED, ("  city: {type: string, max_length: 120}\n", ""),
                 "properties.city", "properties.city was removed", id="property-removed"),
    pytest.param(LISTED, ("image_count: {type: integer,", "image_count: {type: number,"),
                 "properties.image_count", "changed type integer -> number", id="type-changed"),
    pytest.param(LISTED, ("city: {type: string, max_length: 120}",
                          "city: {type: string, max_length: 120, required: true}"),
                 "properties.city", "properties.city became required", id="optional-made-required"),
    pytest.param(LISTED, ("city: {type: string, max_length: 120}", "city: {type: string, max_length: 80}"),
                 "properties.city.max_length", "max_length tightened 120 -> 80", id="max-length-tightened"),
    pytest.param("Lead.yaml", ("values: [chat, offer, call]", "values: [chat, offer]"),
                 "properties.channel.values", "lost ['call']", id="enum-value-removed"),
    pytest.param(LISTED, ("  shipping_available: {type: boolean}\n",
                          "  shipping_available: {type: boolean}\n  promoted: {type: boolean, required: true}\n"),
                 "properties.promoted", "is new and required", id="required-property-added"),
])
def test_check_lock_breaking_change_refused_even_with_bump(types_dir, filename, change, field, phrase):
    edit(types_dir, filename, change, BUMP)
    with pytest.raises(DefinitionError) as excinfo:
        load_catalog(types_dir)
    exc = excinfo.value
    assert (exc.filename, exc.field) == (filename, field)
    assert exc.message.startswith("breaking change refused: ")
    assert phrase in exc.message


def test_check_lock_type_file_deleted_refused(types_dir):
    (types_dir / "Lead.yaml").unlink()
    with pytest.raises(DefinitionError) as excinfo:
        load_catalog(types_dir)
    assert excinfo.value.filename == "Lead.yaml"
    assert "event type removed" in excinfo.value.message


def test_check_lock_disabled_skips_lock(types_dir):
    edit(types_dir, LISTED, ("  city: {type: string, max_length: 120}\n", ""))
    assert "city" not in load_catalog(types_dir, check_lock=False).get("ItemListed").properties


def s(kind="string", required=False, **extra):
    return {"type": kind, "required": required, "pii": False, **extra}


@pytest.mark.parametrize(("old", "new"), [
    pytest.param({"a": s()}, {"a": s(), "b": s()}, id="optional-added"),
    pytest.param({"a": s(required=True)}, {"a": s()}, id="required-relaxed"),
    pytest.param({"a": s("integer", min=0, max=5)}, {"a": s("integer", min=-1, max=9)}, id="range-widened"),
    pytest.param({"a": s("integer", min=0)}, {"a": s("integer")}, id="min-dropped"),
    pytest.param({"a": s("enum", values=["x"])}, {"a": s("enum", values=["x", "y"])}, id="enum-value-added"),
    pytest.param({"a": s(pattern="^a")}, {"a": s()}, id="pattern-dropped"),
])
def test_breaking_changes_widening_yields_nothing(old, new):
    assert list(breaking_changes(old, new)) == []


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param({"a": s("integer")}, {"a": s("integer", max=9)}, "properties.a.max tightened none -> 9",
                 id="limit-added"),
    pytest.param({"a": s(min_length=0)}, {"a": s(min_length=2)}, "properties.a.min_length tightened 0 -> 2",
                 id="min-length-raised"),
    pytest.param({"a": s()}, {"a": s(pattern="^a")}, "properties.a.pattern changed None -> '^a'",
                 id="pattern-added"),
    pytest.param({"o": s("object", properties={"x": s()}, additional_properties=True)},
                 {"o": s("object", properties={"x": s()}, additional_properties=False)},
                 "properties.o.additional_properties turned off", id="additional-properties-off"),
    pytest.param({"o": s("object", properties={"x": s()}, additional_properties=False)},
                 {"o": s("object", properties={}, additional_properties=False)},
                 "properties.o.properties.x was removed", id="nested-property-removed"),
    pytest.param({"l": s("list", items=s("integer"), min_items=0, max_items=5)},
                 {"l": s("list", items=s("string"), min_items=0, max_items=5)},
                 "properties.l.items changed type integer -> string", id="list-items-type-changed"),
    pytest.param({"l": s("list", items=s(), min_items=0, max_items=5)},
                 {"l": s("list", items=s(), min_items=0, max_items=3)},
                 "properties.l.max_items tightened 5 -> 3", id="max-items-lowered"),
])
def test_breaking_changes_narrowing_yields_sentence(old, new, expected):
    assert list(breaking_changes(old, new)) == [expected]


def test_breaking_changes_changed_type_reports_only_type():
    old, new = {"a": s("integer", max=5)}, {"a": s("string", required=True, max_length=1)}
    assert list(breaking_changes(old, new)) == ["properties.a changed type integer -> string"]


def test_context_tightening_is_refused_like_a_type_change(tmp_path):
    import shutil

    from handlers.schema.event_types import load_catalog

    target = tmp_path / "event_types"
    shutil.copytree(Path(__file__).resolve().parents[2] / "event_types", target)
    context = (target / "_context.yaml").read_text()
    (target / "_context.yaml").write_text(context.replace("locale: {type: string, max_length: 35",
                                                          "locale: {type: string, max_length: 10"))
    with pytest.raises(DefinitionError) as refused:
        load_catalog(target)
    assert refused.value.filename == "_context.yaml" and "context.locale.max_length" in str(refused.value)
