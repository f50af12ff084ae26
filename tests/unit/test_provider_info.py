"""The connection forms (provider-info ``conn-fields``): the inputs Airflow's UI renders for them, their
agreement with the README's extras table and with the extras the code reads, the Port field, and
``null`` extras (what a form saves for every field left empty) reading as unset.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms import hooks as hooks_package
from airflow_provider_sms.hooks import hook_class_for_conn_type
from airflow_provider_sms.hooks.base import (
    DEFAULT_MAX_PARTS,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_REPORT_DEADLINE_HOURS,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_WAIT,
    SmsHook,
)
from airflow_provider_sms.provider_info import CONNECTION_TYPES
from airflow_provider_sms.receiver import app as receiver_app
from airflow_provider_sms.receiver.push import push_format

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_provider_sms"
FORMS: dict[str, dict[str, Any]] = {entry["connection-type"]: entry for entry in CONNECTION_TYPES}
CONN_TYPES = sorted(FORMS)
#: extras the hooks cannot do without; the null test sets them to a value
REQUIRED_EXTRAS: dict[str, dict[str, str]] = {"sms_cloud_mas": {"ec_name": "Acme"}}


# ------------------------------------------------------------------------------ what the UI renders


def rendered_input(schema: dict[str, Any]) -> str:
    """The input Airflow 3.3's UI picks for a conn-field's schema.

    Mirrors the order of checks in its ``FlexibleForm/FieldSelector.tsx``: more than one non-null type
    gives a multi-line JSON editor (the "five-row text area" users met); else the first non-null type
    decides, enums become selects, ``format`` and ``examples`` refine strings.
    """
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    non_null = [t for t in types if t != "null"]
    has_enum = isinstance(schema.get("enum"), list)
    if len(non_null) > 1 and not has_enum and not isinstance(schema.get("examples"), list):
        return "multi-type text area"
    kind = non_null[0] if non_null else "string"
    if kind == "boolean":
        return "switch"
    if kind in ("string", "number", "integer") and has_enum:
        return "select"
    if kind in ("integer", "number"):
        return "number"
    if kind == "string" and schema.get("format") == "password":
        return "password"
    if kind == "string" and schema.get("format") == "multiline":
        return "text area"
    if kind == "string":
        return "text with suggestions" if isinstance(schema.get("examples"), list) else "text"
    return kind


NUMBER_FIELDS = {
    "timeout",
    "retries",
    "retry_wait",
    "report_deadline_hours",
    "max_requests_per_second",
    "max_parts",
    "price_per_part",
}
SELECT_FIELDS = {"format", "product_id", "kind", "pwd_case"}


@pytest.mark.parametrize("conn_type", CONN_TYPES)
def test_every_field_renders_as_a_single_line_input_of_its_kind(conn_type: str) -> None:
    for name, field in FORMS[conn_type]["conn-fields"].items():
        schema = field["schema"]
        if name in NUMBER_FIELDS:
            expected = "number"
        elif name in SELECT_FIELDS:
            expected = "select"
        elif name == "verify":
            expected = "text with suggestions"
        elif schema.get("format") == "password":
            expected = "password"
        else:
            expected = "text"
        assert rendered_input(schema) == expected, (conn_type, name, schema)


@pytest.mark.parametrize("conn_type", CONN_TYPES)
def test_selects_offer_only_values_the_hook_takes_and_label_each(conn_type: str) -> None:
    for name, field in FORMS[conn_type]["conn-fields"].items():
        schema = field["schema"]
        if "enum" not in schema:
            continue
        assert schema["enum"][-1] is None, (name, "a select must be clearable to unset")
        values = schema["enum"][:-1]
        assert set(schema["values_display"]) == set(values), name
        if "default" in schema:
            assert schema["default"] in values, name
        if name in ("product_id", "kind"):
            hook = hook_class_for_conn_type(conn_type)
            assert [hook.kind_code(hook, v) for v in values] == values, name  # type: ignore[arg-type]


def test_number_defaults_are_the_hooks_defaults() -> None:
    """The form prefills its defaults, which a save stores: they must be what the hook does without them."""
    expected = {
        "timeout": DEFAULT_READ_TIMEOUT,
        "retries": DEFAULT_RETRIES,
        "retry_wait": DEFAULT_RETRY_WAIT,
        "report_deadline_hours": DEFAULT_REPORT_DEADLINE_HOURS,
        "max_parts": DEFAULT_MAX_PARTS,
        "max_requests_per_second": None,
    }
    for conn_type in CONN_TYPES:
        fields = FORMS[conn_type]["conn-fields"]
        assert {name: fields[name]["schema"].get("default") for name in expected} == expected, conn_type


# ------------------------------------------------------------------------------ the Port field


@pytest.mark.parametrize("conn_type", CONN_TYPES)
def test_every_form_shows_the_port_with_a_numeric_placeholder(conn_type: str) -> None:
    """Airflow 3.3's Test button posts ``port: 0`` for a connection stored without a port, and its API answers
    400; a port can only be stored when the form shows the field."""
    behaviour = FORMS[conn_type]["ui-field-behaviour"]
    assert "port" not in behaviour["hidden-fields"]
    assert behaviour["placeholders"]["port"].isdigit()
    host = behaviour["placeholders"]["host"]
    url_port = re.search(r":(\d+)$", host)
    if url_port:
        assert behaviour["placeholders"]["port"] == url_port.group(1), "the placeholder must agree with the URL's"


# ------------------------------------------------------------------------------ README, forms and code agree


def readme_extras() -> dict[str, set[str]]:
    """conn type -> extras, from README's table whose header is ``| extra | conn types | default | ... |``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = iter(text.splitlines())
    for line in lines:
        if re.match(r"\|\s*extra\s*\|\s*conn types\s*\|", line):
            break
    else:
        pytest.fail("README.md has no extras table (| extra | conn types | default | what it does |)")
    result: dict[str, set[str]] = {t: set() for t in CONN_TYPES}
    next(lines)  # |---|
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        extra = cells[0].strip("`")
        types = CONN_TYPES if cells[1] == "all" else re.findall(r"`([a-z0-9_]+)`", cells[1])
        assert types and set(types) <= set(CONN_TYPES), line
        for conn_type in types:
            result[conn_type].add(extra)
    return result


_READ = re.compile(
    r"""(?:\.extra(?:_bool)?\(|extras\.get\(|_float_extra\(\s*[\w.]+,)\s*(?:"([a-z_]+)"|([A-Z][A-Z0-9_]*))"""
)


def extras_read(path: Path, module: Any) -> set[str]:
    """Extra names a module reads: literal names, or its module-level constants holding one."""
    names = set()
    for literal, constant in _READ.findall(path.read_text(encoding="utf-8")):
        names.add(literal or getattr(module, constant))
    return names


def code_extras() -> dict[str, set[str]]:
    """conn type -> extras the code reads: the base hook's for all, a vendor module's for its own type,
    the push receiver's for the types it takes pushes for."""
    from airflow_provider_sms.hooks import base

    shared = extras_read(PACKAGE / "hooks" / "base.py", base)
    assert {"timeout", "retries", "retry_wait", "max_parts", "max_requests_per_second"} <= shared
    receiver = extras_read(PACKAGE / "receiver" / "app.py", receiver_app)
    assert "callback_secret" in receiver
    result = {}
    for conn_type in CONN_TYPES:
        hook = hook_class_for_conn_type(conn_type)
        module = __import__(hook.__module__, fromlist=["_"])
        own = extras_read(Path(module.__file__ or ""), module)
        result[conn_type] = shared | own | (receiver if push_format(conn_type) else set())
    assert hooks_package.HOOK_BY_CONN_TYPE.keys() == set(CONN_TYPES)
    return result


def test_readme_table_forms_and_code_name_the_same_extras() -> None:
    documented = readme_extras()
    in_forms = {t: set(FORMS[t]["conn-fields"]) for t in CONN_TYPES}
    read = code_extras()
    for conn_type in CONN_TYPES:
        assert documented[conn_type] == in_forms[conn_type], (conn_type, "README vs form")
        assert read[conn_type] == in_forms[conn_type], (conn_type, "read by the code vs form")


def test_the_extras_scan_finds_a_new_read(tmp_path: Path) -> None:
    """The scan behind the agreement test sees each way the code reads an extra."""
    source = tmp_path / "m.py"
    source.write_text(
        'self.config.extra("a")\nself.config.extra_bool("b", True)\nextras.get("c")\n'
        '_float_extra(\n    self.config.extras, "d", 1.0, cid)\nextras.get(E_EXTRA)\n'
    )
    module = type("M", (), {"E_EXTRA": "e"})
    assert extras_read(source, module) == {"a", "b", "c", "d", "e"}


# ------------------------------------------------------------------------------ null extras read as unset


def hook_with(monkeypatch: pytest.MonkeyPatch, conn_type: str, conn_id: str, extra: dict[str, Any]) -> SmsHook:
    conn = {
        "conn_type": conn_type,
        "host": "https://gw.example.com:8443",
        "port": 8443,
        "login": "app",
        "password": "pw-0123456789",
        "extra": extra,
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return hook_class_for_conn_type(conn_type)(sms_conn_id=conn_id)


def settings(hook: SmsHook, names: list[str]) -> dict[str, Any]:
    """Everything a hook derives from its extras, as plain values."""
    config = hook.config
    seen: dict[str, Any] = {
        "timezone": str(config.timezone),
        "read_timeout": config.read_timeout,
        "retries": hook.retries,
        "retry_wait": hook.retry_wait,
        "report_deadline": hook.report_deadline,
        "requests_per_second": hook.requests_per_second,
        "max_parts": hook.max_parts,
        "signed": hook.signed_content("hello", None),
        **{f"extra:{name}": config.extra(name, "<unset>") for name in names},
    }
    if hasattr(hook, "tls_verify"):
        seen["tls_verify"] = hook.tls_verify
    for name in ("ec_name", "body_format", "_credentials"):
        if hasattr(type(hook), name):
            value = getattr(hook, name)
            seen[name] = value() if callable(value) else value
    return seen


@pytest.mark.parametrize("conn_type", CONN_TYPES)
def test_a_form_saved_with_every_field_empty_reads_as_unset(monkeypatch: pytest.MonkeyPatch, conn_type: str) -> None:
    """The UI stores each empty field as null; one at a time and all together, null must equal absent."""
    names = list(FORMS[conn_type]["conn-fields"])
    required = REQUIRED_EXTRAS.get(conn_type, {})
    unset = settings(hook_with(monkeypatch, conn_type, "sms_unset", dict(required)), names)
    assert unset["retries"] == DEFAULT_RETRIES and unset["max_parts"] == DEFAULT_MAX_PARTS
    for name in names:
        extra = {name: None, **{k: v for k, v in required.items() if k != name}}
        if name in required:
            continue  # null there means missing: the hook's own error, tested with each hook
        assert settings(hook_with(monkeypatch, conn_type, f"sms_null_{name}", extra), names) == unset, name
    all_null = {**dict.fromkeys(names), **required}
    assert settings(hook_with(monkeypatch, conn_type, "sms_all_null", all_null), names) == unset
