"""Each setting is written once (settings/catalog.py); what is made from it is current.

The model's keys and defaults come from it; docs/settings.md, the man page's SETTINGS and the
env template install writes are generated from it, and a stale one fails here (or in
test_manpage.py for the page)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from dotenv import dotenv_values

from esxi_suspend.settings.catalog import BY_KEY, SETTINGS, env_template
from esxi_suspend.settings.model import ALIASES, KNOWN_KEYS, REQUIRED_KEYS

ROOT = Path(__file__).resolve().parents[2]


def _settings_doc() -> str:
    spec = importlib.util.spec_from_file_location("settings_doc", ROOT / "tools/settings_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.render()
    return text


def test_docs_settings_is_current() -> None:
    assert (ROOT / "docs/settings.md").read_text() == _settings_doc(), (
        "docs/settings.md is stale: run python tools/settings_doc.py > docs/settings.md"
    )


def test_the_model_takes_keys_defaults_and_aliases_from_the_catalog() -> None:
    assert list(KNOWN_KEYS) == [s.key for s in SETTINGS]
    assert len(BY_KEY) == len(SETTINGS), "a key written twice"
    assert REQUIRED_KEYS == ("ESXI_HOST", "ESXI_KEY_FILE")
    assert ALIASES == {"ESXIHOST": "ESXI_HOST", "ESXIUSER": "ESXI_USER"}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_each_setting_reads_well(setting: object) -> None:
    from esxi_suspend.settings.catalog import Setting

    assert isinstance(setting, Setting)
    assert setting.text and "\n" not in setting.text and not setting.text.endswith(".")
    assert setting.text.count("`") % 2 == 0, "an unclosed `"
    if setting.required:
        assert setting.default is None and setting.default_text == "required"


@pytest.mark.parametrize("known_hosts", [None, "/srv/tree/etc/esxi-suspend/known_hosts"])
def test_the_env_template_sets_only_the_key_and_says_every_setting(
    tmp_path: Path, known_hosts: str | None
) -> None:
    text = env_template("/etc/esxi-suspend/id_ed25519", known_hosts)
    env = tmp_path / "esxi-suspend.env"
    env.write_text(text)
    values = dotenv_values(env, interpolate=False)
    expected = {"ESXI_KEY_FILE": "/etc/esxi-suspend/id_ed25519"}
    if known_hosts:
        expected["ESXI_KNOWN_HOSTS"] = known_hosts
    assert values == expected
    for setting in SETTINGS:
        assert f"# {setting.key}: " in text, setting.key
        assert f"{setting.key}=" in text, setting.key
    assert all(len(line) <= 100 for line in text.splitlines())
    assert text.isascii()
