//! The files of a new Python plugin.

/// (path, text) of each file, for a plugin `name` whose Python SDK folder
/// (the one holding `keel_sdk`) is `sdk`.
pub(super) fn files(name: &str, sdk: &str) -> Vec<(&'static str, String)> {
    // Event types are dotted lower-case words: no '-'.
    let event = name.replace('-', "_");
    vec![
        (
            "pyproject.toml",
            PYPROJECT.replace("{name}", name).replace("{sdk}", sdk),
        ),
        ("keel-plugin.toml", super::manifest(name)),
        ("app.py", APP.replace("{event}", &event)),
        ("tests/test_plugin.py", TEST.replace("{event}", &event)),
        (
            ".gitignore",
            "/target\n__pycache__/\n.pytest_cache/\n".to_owned(),
        ),
    ]
}

const PYPROJECT: &str = r#"[project]
name = "{name}"
version = "0.1.0"
description = "A Keel plugin"
requires-python = ">=3.10"

# `keel plugin build` wraps `module` into a component with componentize-py;
# `sdk` holds keel_sdk and keel_plugin_test (`keel plugin sdk` refreshes
# the copy in keel/).
[tool.keel]
module = "app"
sdk = "{sdk}"

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["{sdk}"]
"#;

const APP: &str = r#""""A Keel plugin. Each operation is a GraphQL field of keel-plugin.toml."""

from keel_sdk import Context, InvalidInput, config, counters, events, operation


@operation("greet")
def greet(ctx: Context, input: dict) -> dict:
    name = input["name"]
    if not name.strip():
        raise InvalidInput("name must not be empty")
    count = counters.add(f"greeted:{name}", 1, min=0).value
    events.emit("{event}.greeted", {"name": name, "count": count})
    hello = config.get().get("greeting", "Hello")
    return {"text": f"{hello}, {name}!", "count": count}
"#;

const TEST: &str = r#""""The plugin's tests, against `keel plugin harness` (run them with
`keel plugin test`, or pytest with keel on PATH)."""

import pathlib

import pytest
from keel_plugin_test import CallError, Harness

PLUGIN = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def keel():
    with Harness.start() as harness:
        yield harness


def test_greets_and_counts(keel):
    plugin = keel.plugin(PLUGIN, {"greeting": "Hi"})
    assert keel.call(plugin, "greet", {"name": "Ann"}) == {"text": "Hi, Ann!", "count": 1}
    assert keel.call(plugin, "greet", {"name": "Ann"})["count"] == 2
    assert keel.counter(plugin, "greeted:Ann") == 2
    assert len(keel.events("{event}.greeted")) == 2


def test_refuses_an_empty_name(keel):
    plugin = keel.plugin(PLUGIN)
    with pytest.raises(CallError) as refused:
        keel.call(plugin, "greet", {"name": " "})
    assert refused.value.code == "BAD_USER_INPUT"
    assert keel.events("{event}.greeted") == []
"#;
