"""`otactl down` and `up --prune`: delete the objects otactl labelled (all of them, or
those no longer rendered) and wait until they are gone."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from otactl.config import Values
from otactl.deploy.objects import CREATED_NAMESPACE, OWNED_KINDS, _annotations
from otactl.deploy.run import Report, _hold_installation, _quiet
from otactl.wait import Target, wait_deleted

if TYPE_CHECKING:
    from otactl.kube import Cluster


def prune(
    cluster: Cluster, namespace: str, keep: set[tuple[str, str]], dry_run: bool = False
) -> list[str]:
    """Delete otactl-labelled objects that are no longer rendered."""
    from otactl.kube import MANAGED_SELECTOR

    gone = []
    for kind in OWNED_KINDS:
        items, _ = cluster.list_objects(kind, namespace, MANAGED_SELECTOR)
        for obj in items:
            name = obj["metadata"]["name"]
            if (kind, name) not in keep:
                if not dry_run:
                    cluster.delete(kind, namespace, name)
                gone.append(f"{kind} {namespace}/{name}")
    return gone


# --- down ------------------------------------------------------------------------------


def down(
    cluster: Cluster,
    values: Values,
    *,
    purge: bool = False,
    timeout: float = 300.0,
    report: Report = _quiet,
) -> list[str]:
    """Delete what otactl created and wait until it is gone. PersistentVolumeClaims (the
    data of mysql, kafka, zookeeper, treehub) stay unless `purge`."""
    from otactl.kube import MANAGED_SELECTOR

    ns = values.namespace
    kinds = OWNED_KINDS + (("PersistentVolumeClaim",) if purge else ())
    targets = []
    end = time.monotonic() + timeout
    with cluster.patience(end), contextlib.ExitStack() as held:
        _hold_installation(cluster, ns, report, held)
        for kind in kinds:
            items, _ = cluster.list_objects(kind, ns, MANAGED_SELECTOR)
            for obj in items:
                name = obj["metadata"]["name"]
                cluster.delete(kind, ns, name)
                targets.append(Target(kind, ns, name))
        wait_deleted(cluster, targets, max(1.0, end - time.monotonic()), report, "down")
        if purge and ns != "default":
            namespace = cluster.get("Namespace", None, ns)
            # Only one `up` created: a namespace that was there before stays.
            if namespace is not None and CREATED_NAMESPACE in _annotations(namespace):
                cluster.delete("Namespace", None, ns)
                left = max(1.0, end - time.monotonic())
                wait_deleted(cluster, [Target("Namespace", "", ns)], left, report, "down")
                targets.append(Target("Namespace", "", ns))
    return [str(t) for t in targets]
