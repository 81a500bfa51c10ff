"""Values: shipped defaults, an optional profile, the user's file and `--set`, merged and
validated once into one typed `Values` object.

`schema` holds the typed values (what each setting may be), `loading` where they come from
(files, profiles, `--set`), how they merge, and the one-line report of a bad one."""

from otactl.config.loading import (
    Layer,
    deep_merge,
    load_values,
    parse_set,
    profiles,
    project_root,
    templates_dir,
    user_config_path,
)
from otactl.config.schema import (
    DNS_LABEL,
    HOSTNAME,
    QUANTITY,
    Component,
    Device,
    Gateway,
    Gke,
    Infra,
    Ingress,
    NetworkPolicy,
    Pki,
    Resources,
    ReverseProxy,
    ScalaService,
    Services,
    StatefulComponent,
    StoredScalaService,
    Strict,
    Timeouts,
    Values,
)

__all__ = [
    "DNS_LABEL",
    "HOSTNAME",
    "QUANTITY",
    "Component",
    "Device",
    "Gateway",
    "Gke",
    "Infra",
    "Ingress",
    "Layer",
    "NetworkPolicy",
    "Pki",
    "Resources",
    "ReverseProxy",
    "ScalaService",
    "Services",
    "StatefulComponent",
    "StoredScalaService",
    "Strict",
    "Timeouts",
    "Values",
    "deep_merge",
    "load_values",
    "parse_set",
    "profiles",
    "project_root",
    "templates_dir",
    "user_config_path",
]
