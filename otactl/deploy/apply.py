"""Applying a phase's objects: concurrently, by server-side apply, recording what changed
(or, in a dry run, the diff of what would change, Secret values hidden)."""

from __future__ import annotations

import difflib
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import yaml

from otactl.deploy.run import UpResult

if TYPE_CHECKING:
    from otactl.kube import Cluster


def _normalized(obj: dict[str, Any] | None) -> dict[str, Any]:
    """What a diff should compare: no server bookkeeping, Secret values hidden."""
    if obj is None:
        return {}
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {
        k: v
        for k, v in obj.get("metadata", {}).items()
        if k not in {"managedFields", "resourceVersion", "uid", "creationTimestamp",
                     "generation", "annotations"}
    }  # fmt: skip
    annotations = {
        k: v
        for k, v in (obj.get("metadata", {}).get("annotations") or {}).items()
        if not k.startswith("deployment.kubernetes.io/")
    }
    if annotations:
        meta["annotations"] = annotations
    out["metadata"] = meta
    if obj.get("kind") == "Secret":
        out["data"] = {
            k: "sha256:" + hashlib.sha256(v.encode()).hexdigest()[:12]
            for k, v in (obj.get("data") or {}).items()
        }
    return out


class _Applier:
    """Applies a phase's objects concurrently and records what changed."""

    def __init__(self, cluster: Cluster, result: UpResult, dry_run: bool) -> None:
        self.cluster = cluster
        self.result = result
        self.dry_run = dry_run
        # A dry run cannot create the namespace, and the API server refuses a dry run of
        # an object in a namespace that does not exist: everything in it is simply new.
        self.missing_namespaces: set[str] = set()

    def _one(self, obj: dict[str, Any]) -> tuple[str, bool, str]:
        from otactl.kube import ref

        meta = obj["metadata"]
        if self.dry_run and meta.get("namespace") in self.missing_namespaces:
            before, after = None, obj
        else:
            before = self.cluster.get(obj["kind"], meta.get("namespace"), meta["name"])
            after = self.cluster.apply(obj, dry_run=self.dry_run)
        if self.dry_run:
            old = yaml.safe_dump(_normalized(before), sort_keys=True).splitlines()
            new = yaml.safe_dump(_normalized(after), sort_keys=True).splitlines()
            diff = "\n".join(
                difflib.unified_diff(old, new, f"{ref(obj)} (cluster)", f"{ref(obj)} (otactl)",
                                     lineterm="")
            )  # fmt: skip
            return ref(obj), bool(diff), diff
        moved = before is None or (
            before["metadata"].get("resourceVersion") != after["metadata"].get("resourceVersion")
        )
        return ref(obj), moved, ""

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
        if not objects:
            return []
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(self._one, objects))
        changed = []
        for name, moved, diff in outcomes:
            if moved:
                changed.append(name)
                if diff:
                    self.result.diff += diff + "\n"
            else:
                self.result.unchanged += 1
        self.result.changed += changed
        return changed
