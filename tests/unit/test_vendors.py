"""Each vendor is declared once (``provider_info.VENDORS``): the hook classes, the hooks package and the test
fixtures take it from there, the push receiver names no vendor, and the simulator, an independent
implementation, imports no hook code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from airflow_provider_sms import hooks, testing
from airflow_provider_sms.hooks import hook_class_for_conn_type
from airflow_provider_sms.provider_info import CONNECTION_TYPES, VENDORS
from airflow_provider_sms.simulator.core import DEFAULT_ACCOUNTS

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_sms"


def test_hook_classes_take_their_declaration_from_the_one_source() -> None:
    for vendor in VENDORS.values():
        hook = hook_class_for_conn_type(vendor.conn_type)
        assert (hook.__name__, hook.vendor, hook.conn_type, hook.hook_name, hook.default_host) == (
            vendor.hook_class,
            vendor.name,
            vendor.conn_type,
            vendor.hook_name,
            vendor.default_host,
        )
        assert hook.__module__ == f"airflow_provider_sms.hooks.{vendor.name}"
    assert {v.conn_type: v.hook_class for v in VENDORS.values()} == hooks.HOOK_BY_CONN_TYPE
    assert [entry["connection-type"] for entry in CONNECTION_TYPES] == [v.conn_type for v in VENDORS.values()]
    assert tuple(VENDORS) == testing.VENDORS


def test_the_simulator_serves_every_vendor() -> None:
    assert list(DEFAULT_ACCOUNTS) == list(VENDORS)


def _code_strings(path: Path) -> set[str]:
    """The string literals of a module's code, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def test_the_receiver_names_no_vendor() -> None:
    """Which vendor pushes what, in which shape, and how it proves who it is, is its hook's ``push``."""
    names = set(VENDORS) | {v.conn_type for v in VENDORS.values()}
    paths = sorted((PACKAGE / "receiver").glob("*.py"))
    assert len(paths) >= 3, paths  # the receiver's modules were found (an empty glob would pass vacuously)
    for path in paths:
        assert not names & _code_strings(path), path.name


def test_the_simulator_imports_no_hook_code() -> None:
    """The simulator checks the hooks' wire formats: it must not share their code."""
    code = (
        "import sys; import airflow_provider_sms.simulator, airflow_provider_sms.simulator.server as s; "
        "s.load_protocols(s.Gateway()); "
        "print([m for m in sys.modules if m.startswith('airflow_provider_sms.hooks')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_hook_of_an_undeclared_vendor_keeps_its_own_attributes() -> None:
    """A user's own SmsHook subclass for another gateway: no KeyError, and what it sets stays."""
    from airflow_provider_sms.hooks.base import SmsHook

    class AcmeHook(SmsHook):
        vendor = "acme"
        conn_type = "acme_sms"
        hook_name = "Acme SMS"

    assert (AcmeHook.conn_type, AcmeHook.hook_name) == ("acme_sms", "Acme SMS")
