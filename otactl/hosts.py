"""`/etc/hosts` lines for a deployment without DNS (`otactl hosts`).

The build tools and browsers reach `app`, `tuf-reposerver`, `treehub` and `web-events`
under `<domain>` through the reverse proxy; devices reach `server_name` through the
gateway. Each name goes to the address its Service really has from outside: the
LoadBalancer's ingress when it is one, otherwise a node's address (ExternalIP before
InternalIP) with the NodePort. With `ingress.enabled` the public names go to the Ingress's
address instead. Plain data in, lines out: `otactl.kube` reads the objects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otactl.errors import ClusterError

PROXIED = ("app", "tuf-reposerver", "treehub", "web-events")


@dataclass(frozen=True)
class Exposure:
    """How a Service (or an Ingress) is reachable from outside the cluster."""

    name: str  # "Service reverse-proxy", "Ingress ota-ce"
    type: str  # ClusterIP, NodePort, LoadBalancer, or Ingress
    ingress: tuple[dict[str, str], ...] = ()  # status.loadBalancer.ingress
    node_ports: tuple[int, ...] = ()

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Exposure:
        """From a Service or Ingress object as the API returns it."""
        spec = obj.get("spec", {})
        lb = tuple((obj.get("status", {}).get("loadBalancer") or {}).get("ingress") or [])
        name = obj["metadata"]["name"]
        if obj.get("kind") == "Ingress":
            return cls(f"Ingress {name}", "Ingress", lb)
        ports = tuple(int(p["nodePort"]) for p in spec.get("ports", []) if p.get("nodePort"))
        return cls(f"Service {name}", spec.get("type", "ClusterIP"), lb, ports)


@dataclass(frozen=True)
class Address:
    host: str  # an IP, or a DNS name (LoadBalancer hostnames)
    how: str  # for the comment: "LoadBalancer", "node ExternalIP", ...

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def node_address(nodes: Sequence[dict[str, str]]) -> Address | None:
    """A node address reachable from outside if the cluster has one, else an internal one
    (the local cluster and bare-metal clusters only have InternalIP)."""
    for kind in ("ExternalIP", "InternalIP"):
        for a in nodes:
            if a.get("type") == kind and a.get("address"):
                return Address(a["address"], f"node {kind}")
    return None


def address_of(exposure: Exposure, nodes: Sequence[dict[str, str]]) -> Address:
    """Where `exposure`'s Service is reached from outside, or a ClusterError saying why
    it is not (no LoadBalancer address yet, ClusterIP only, no node address)."""
    if exposure.type in ("LoadBalancer", "Ingress"):
        for ing in exposure.ingress:
            if ing.get("ip"):
                return Address(ing["ip"], exposure.type)
            if ing.get("hostname"):
                return Address(ing["hostname"], f"{exposure.type} hostname")
        who = "the cloud" if exposure.type == "LoadBalancer" else "the ingress controller"
        raise ClusterError(
            f"{exposure.name} has no external address yet: wait for {who} to assign one, "
            "then run this again"
        )
    if exposure.type == "NodePort":
        found = node_address(nodes)
        if found is None:
            raise ClusterError(f"{exposure.name} is a NodePort, but no node has an IP")
        return found
    raise ClusterError(
        f"{exposure.name} is {exposure.type}: not reachable from outside the "
        "cluster (set its service_type to NodePort or LoadBalancer, or use kubectl "
        "port-forward)"
    )


@dataclass(frozen=True)
class HostsEntry:
    """Names and the address they reach, and through what (`otactl hosts -o json`)."""

    address: Address
    names: tuple[str, ...]
    exposure: Exposure

    def lines(self) -> list[str]:
        """A comment saying where the address comes from, then the /etc/hosts line."""
        exposure, addr = self.exposure, self.address
        note = f"# {exposure.name}: {addr.how} {addr.host}"
        if exposure.type == "NodePort" and exposure.node_ports:
            note += f", ports {', '.join(map(str, exposure.node_ports))}"
        if addr.is_ip:
            return [note, f"{addr.host} {' '.join(self.names)}"]
        # /etc/hosts maps names to addresses only; a hostname needs DNS (a CNAME record).
        names = " ".join(self.names)
        return [note, f"# /etc/hosts cannot alias: point {names} at {addr.host} in DNS"]

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address.host,
            "address_is_ip": self.address.is_ip,
            "how": self.address.how,
            "names": list(self.names),
            "via": self.exposure.name,
            "type": self.exposure.type,
            "node_ports": list(self.exposure.node_ports),
        }


def hosts_entries(
    domain: str,
    server_name: str,
    public: Exposure,
    gateway: Exposure,
    nodes: Sequence[dict[str, str]],
) -> list[HostsEntry]:
    """The public names (through `public`: the reverse proxy's Service, or the Ingress in
    front of it when there is one) and the gateway name, each with its outside address."""
    proxied = tuple(f"{name}.{domain}" for name in PROXIED)
    return [
        HostsEntry(address_of(public, nodes), proxied, public),
        HostsEntry(address_of(gateway, nodes), (server_name,), gateway),
    ]


def hosts_lines(
    domain: str,
    server_name: str,
    public: Exposure,
    gateway: Exposure,
    nodes: Sequence[dict[str, str]],
) -> list[str]:
    """Lines to add to /etc/hosts (comments say where each address comes from)."""
    entries = hosts_entries(domain, server_name, public, gateway, nodes)
    return [line for entry in entries for line in entry.lines()]
