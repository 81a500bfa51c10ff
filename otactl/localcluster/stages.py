"""What kwok simulates: the stage files that move pods, nodes and volumes through their
lives, and the fake nodes and the StorageClass created at start."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from otactl.errors import LocalClusterError
from otactl.localcluster.locations import contrib_dir

STORAGE_CLASS = "standard"


def _stage_files(standin: bool) -> list[Path]:
    """kwok's stage files for this cluster, each checked to be there."""
    contrib = contrib_dir()
    # How pods start: checked by the stand-in against their image's contract, or at once.
    start = "kwok-pod-start-standin.yaml" if standin else "kwok-pod-start.yaml"
    stages = [contrib / "kwok-stages.yaml", contrib / start]
    for path in stages:
        if not path.is_file():
            raise LocalClusterError(f"{path} is missing")
    return stages


def _bootstrap_objects(nodes: Sequence[str]) -> str:
    objs: list[dict[str, object]] = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            # Served by the volume stages in kwok-stages.yaml, which bind a fake PV at once.
            "provisioner": "kwok.x-k8s.io/volume",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
    ]
    for name in nodes:
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "type": "kwok",
                    },
                },
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "250"},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "250"},
                },
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
