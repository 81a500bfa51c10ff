"""`/etc/hosts` lines from Service and node data."""

from __future__ import annotations

import pytest

from otactl.errors import ClusterError
from otactl.hosts import Exposure, hosts_entries, hosts_lines

NODES = [
    {"type": "Hostname", "address": "node-0"},
    {"type": "InternalIP", "address": "10.0.0.5"},
]
PROXIED = "app.example.com tuf-reposerver.example.com treehub.example.com web-events.example.com"


def svc(name: str, type_: str, ingress: list | None = None, node_port: int | None = None) -> dict:
    ports = [{"port": 80, **({"nodePort": node_port} if node_port else {})}]
    return {
        "metadata": {"name": name},
        "spec": {"type": type_, "ports": ports},
        "status": {"loadBalancer": {"ingress": ingress} if ingress else {}},
    }


def lines(rp: dict, gw: dict, nodes: list = NODES) -> list[str]:
    return hosts_lines("example.com", "ota.example.com", Exposure.of(rp), Exposure.of(gw), nodes)


def test_nodeport_uses_a_node_address() -> None:
    out = lines(svc("reverse-proxy", "NodePort", node_port=30080),
                svc("gateway-service", "NodePort", node_port=30443))  # fmt: skip
    assert f"10.0.0.5 {PROXIED}" in out and "10.0.0.5 ota.example.com" in out
    assert "# Service reverse-proxy: node InternalIP 10.0.0.5, ports 30080" in out
    external = [*NODES, {"type": "ExternalIP", "address": "203.0.113.7"}]
    out = lines(svc("reverse-proxy", "NodePort", node_port=30080),
                svc("gateway-service", "NodePort", node_port=30443), external)  # fmt: skip
    assert "203.0.113.7 ota.example.com" in out


def test_loadbalancer_ingress_ip_and_hostname() -> None:
    out = lines(
        svc("reverse-proxy", "LoadBalancer", [{"ip": "198.51.100.10"}]),
        svc("gateway-service", "LoadBalancer", [{"hostname": "gw.elb.example.net"}]),
    )
    assert f"198.51.100.10 {PROXIED}" in out
    # A hostname cannot go into /etc/hosts: a comment says what DNS needs instead.
    assert not any(line.endswith(" ota.example.com") and line[0] != "#" for line in out)
    assert "# /etc/hosts cannot alias: point ota.example.com at gw.elb.example.net in DNS" in out


def test_unreachable_services_are_explained() -> None:
    with pytest.raises(
        ClusterError, match="reverse-proxy has no external address yet: wait for the cloud"
    ):
        lines(svc("reverse-proxy", "LoadBalancer"), svc("gateway-service", "NodePort"))
    with pytest.raises(ClusterError, match="Service reverse-proxy is ClusterIP: not reachable"):
        lines(svc("reverse-proxy", "ClusterIP"), svc("gateway-service", "NodePort"))
    with pytest.raises(ClusterError, match="no node has an IP"):
        lines(svc("reverse-proxy", "NodePort"), svc("gateway-service", "NodePort"), [])


def test_ingress_in_front_of_the_reverse_proxy() -> None:
    ingress = {"kind": "Ingress", "metadata": {"name": "ota-ce"}, "spec": {}, "status": {}}
    gw = svc("gateway-service", "NodePort", node_port=30443)
    with pytest.raises(ClusterError, match="Ingress ota-ce has no external address yet: wait "
                       "for the ingress controller"):  # fmt: skip
        lines(ingress, gw)
    ingress["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.4"}]}}
    out = lines(ingress, gw)
    assert "# Ingress ota-ce: Ingress 192.0.2.4" in out and f"192.0.2.4 {PROXIED}" in out


def test_entries_as_json_say_where_each_address_comes_from() -> None:
    rp = svc("reverse-proxy", "NodePort", node_port=30444)
    gw = svc("gateway-service", "LoadBalancer", [{"hostname": "gw.elb.example.net"}])
    proxy, gateway = (
        e.as_json()
        for e in hosts_entries("example.com", "ota.example.com", Exposure.of(rp),
                               Exposure.of(gw), NODES)
    )  # fmt: skip
    assert proxy == {
        "address": "10.0.0.5", "address_is_ip": True, "how": "node InternalIP",
        "names": PROXIED.split(), "via": "Service reverse-proxy", "type": "NodePort",
        "node_ports": [30444],
    }  # fmt: skip
    assert gateway["address"] == "gw.elb.example.net" and gateway["address_is_ip"] is False
    assert gateway["names"] == ["ota.example.com"] and gateway["type"] == "LoadBalancer"
