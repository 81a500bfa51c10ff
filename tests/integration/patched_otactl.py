"""`otactl` with some rendered objects patched: `python -m tests.integration.patched_otactl
ARGS...` runs the real CLI, after the edits in $OTACTL_TEST_PATCHES (JSON) are applied to
what `render` returns. How the contract tests break one rule without a values knob for it.

Each edit: {"kind": K, "name": N, "drop": true} removes the object, or
{"kind": K, "name": N, "path": "spec.template.spec.containers.0.args", "value": V}
sets (or with "delete": true removes) the field at that dotted path (digits index lists).
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

from otactl import render
from otactl.cli import main


def _apply(docs: list[dict[str, Any]], edit: dict[str, Any]) -> list[dict[str, Any]]:
    hit = [d for d in docs if d["kind"] == edit["kind"] and d["metadata"]["name"] == edit["name"]]
    if not hit:
        return docs
    if edit.get("drop"):
        return [d for d in docs if d is not hit[0]]
    node: Any = hit[0]
    *parents, last = edit["path"].split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    key: Any = int(last) if isinstance(node, list) else last
    if edit.get("delete"):
        if isinstance(node, list) or key in node:
            del node[key]
    else:
        node[key] = edit["value"]
    return docs


def _patched_render(original: Any, edits: list[dict[str, Any]]) -> Any:
    def patched(values: Any, secrets: Any) -> render.Rendered:
        out = original(values, secrets)
        sets = {}
        for name, text in out.sets.items():
            docs = [d for d in yaml.safe_load_all(text) if d]
            for edit in edits:
                docs = _apply(docs, edit)
            render._roll_on_config_change(docs)  # as a changed ConfigMap would, rendered
            sets[name] = yaml.safe_dump_all(docs, sort_keys=False)
        return render.Rendered(sets)

    return patched


if __name__ == "__main__":
    render.render = _patched_render(render.render, json.loads(os.environ["OTACTL_TEST_PATCHES"]))
    main()
