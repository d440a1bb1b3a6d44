#!/usr/bin/env python3
"""Prints the README's configuration reference: every key of `atelier config check`
(except the [[models]] catalog), its default and its environment variable, with the
description from the comment above it in config.toml.

    cargo build && target/debug/atelier config check | python3 scripts/config-reference.py
"""
import re
import sys
import tomllib
from pathlib import Path

text = sys.stdin.read()
config = tomllib.loads(text.split("\n", 1)[1] if text.startswith("#") else text)

# Descriptions: the comment lines right above `# key = …` in config.toml, per section.
descriptions = {}
section, pending = "", []
for line in (Path(__file__).parent.parent / "config.toml").read_text().splitlines():
    header = re.match(r"^\[([a-z0-9_.]+)\]", line)
    setting = re.match(r"^#\s*([a-z_]+)\s*=", line)
    if header:
        section, pending = header.group(1), []
    elif setting:
        descriptions[f"{section}.{setting.group(1)}"] = " ".join(pending)
        pending = []
    elif line.startswith("#"):
        pending.append(line.lstrip("# ").strip())
    else:
        pending = []


def rows(table, prefix):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from rows(value, f"{prefix}{key}.")
        elif key != "models" or prefix:
            yield f"{prefix}{key}", value


def show(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '""' if value == "" else f'"{value}"'
    return str(value).replace("'", '"')


defaults = dict(rows(config, ""))
# Optional keys have no value by default and are absent from `config check`.
keys = list(defaults) + [k for k in descriptions if k not in defaults]
print("| key | default | environment | what it is |")
print("|---|---|---|---|")
for key in keys:
    env = "ATELIER_" + key.replace(".", "_").upper()
    about = descriptions.get(key, "").replace("|", "\\|")
    default = f"`{show(defaults[key])}`" if key in defaults else "unset"
    print(f"| `{key}` | {default} | `{env}` | {about} |")
