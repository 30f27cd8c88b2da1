"""scripts/swarm-config.py: docker-compose config output -> a stack file swarm runs as written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("swarm_config", ROOT / "scripts" / "swarm-config.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_escaped_dollar_stays_escaped_and_a_lone_dollar_is_escaped() -> None:
    conv = _module().convert
    # as docker-compose 1.29 `config` prints them: the file's "$$@" kept, an interpolated value's "$" bare
    doc = {"services": {"api": {
        "entrypoint": ["/bin/bash", "-c", 'exec /entrypoint "$$@"', "--"],
        "environment": {"PASSWORD": "a$b"},
        "build": {"context": "."}, "restart": "always", "ports": ["127.0.0.1:8080:8080"],
    }}}
    out = conv(doc, keep_ports=False)
    api = out["services"]["api"]
    assert api["entrypoint"][2] == 'exec /entrypoint "$$@"'  # swarm unescapes once: the shell gets "$@"
    assert api["environment"]["PASSWORD"] == "a$$b"
    assert "build" not in api and "restart" not in api and "ports" not in api
    assert out["version"] == "3.8"


def test_services_reached_by_dns_round_robin_and_kept_ports_in_host_mode() -> None:
    conv = _module().convert
    doc = {"services": {
        "postgres": {"image": "pg"},
        "api": {"image": "af", "ports": ["127.0.0.1:18080:8080", "9000/udp"], "deploy": {"replicas": 2}},
    }}
    out = conv(doc, keep_ports=True)
    # no virtual IP: without the kernel's IPVS a VIP answers "No route to host"
    assert out["services"]["postgres"]["deploy"] == {"endpoint_mode": "dnsrr"}
    assert out["services"]["api"]["deploy"] == {"replicas": 2, "endpoint_mode": "dnsrr"}
    assert out["services"]["api"]["ports"] == [
        {"target": 8080, "published": 18080, "protocol": "tcp", "mode": "host"},
        {"target": 9000, "published": 9000, "protocol": "udp", "mode": "host"},
    ]
    vip = conv({"services": {"api": {"image": "af", "ports": ["8080:8080"]}}}, keep_ports=True, vip=True)
    assert vip["services"]["api"] == {"image": "af", "ports": ["8080:8080"]}


def test_port_ranges_expand_and_a_bad_spec_is_named() -> None:
    import pytest

    mod = _module()
    out = mod.convert({"services": {"api": {"image": "af", "ports": ["18080-18081:8080-8081"]}}}, keep_ports=True)
    assert out["services"]["api"]["ports"] == [
        {"target": 8080, "published": 18080, "protocol": "tcp", "mode": "host"},
        {"target": 8081, "published": 18081, "protocol": "tcp", "mode": "host"},
    ]
    with pytest.raises(SystemExit, match=r"'80-81:90'.*differ in length"):
        mod.convert({"services": {"api": {"ports": ["80-81:90"]}}}, keep_ports=True)
    with pytest.raises(SystemExit, match=r"cannot read the port spec 'web:80'"):
        mod.convert({"services": {"api": {"ports": ["web:80"]}}}, keep_ports=True)
