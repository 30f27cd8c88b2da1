#!/usr/bin/env python3
"""Turn `docker-compose config` output into a file `docker stack deploy` accepts (stdin -> stdout).

    docker-compose -f docker-compose.yaml [-f docker-compose.local.yaml] -f docker-compose.swarm.yaml \\
        --env-file .env config | python3 scripts/swarm-config.py [--keep-ports] | docker stack deploy -c - cbmflow

Every literal `$` is written `$$`: docker-compose 1.29's `config` interpolates variables but leaves an
escaped `$$` as it is, so `$$` stays `$$` and a lone `$` (from an interpolated value) becomes `$$`. Swarm's compose loader rejects `depends_on` with conditions and ignores `build`, `restart` and
`container_name`: they are dropped (swarm restarts what exits). Published ports are dropped too unless
--keep-ports: swarm ignores the `127.0.0.1:` of a port spec and publishes on every interface.

Every service is reached by DNS round robin (`endpoint_mode: dnsrr`), not through a virtual IP:
swarm's virtual IPs and its ingress routing mesh need the kernel's IPVS, which many VM kernels
(these machines' among them: no CONFIG_IP_VS) do not have, and without it every connection to a
service name fails with "No route to host". DNS names then resolve to the containers themselves;
kept ports are published in host mode (the routing mesh needs IPVS too). --vip keeps swarm's default.
"""

from __future__ import annotations

import argparse
import re
import sys

import yaml

DROPPED = ("build", "restart", "depends_on", "container_name")


def _escape(value: object) -> object:
    """Every literal `$` of interpolated `docker-compose config` output as `$$` (an escaped `$$` kept)."""
    if isinstance(value, str):
        return re.sub(r"\$\$|\$", "$$", value)
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def _host_mode(port: object) -> list[dict]:
    """A compose port spec ("[ip:]published:target[/proto]", ranges "8000-8001:9000-9001", or long form)
    as long-form entries published in host mode (one per port of a range)."""
    if isinstance(port, dict):
        return [{**port, "mode": "host"}]
    spec, _, proto = str(port).partition("/")
    parts = spec.split(":")
    published, target = (parts[-2], parts[-1]) if len(parts) > 1 else (parts[-1], parts[-1])
    try:
        pub, tgt = _port_range(published), _port_range(target)
    except ValueError:
        raise SystemExit(f"swarm-config: cannot read the port spec {port!r} "
                         "(expected [ip:]published:target[/proto], ports or ranges like 8000-8001)") from None
    if len(pub) != len(tgt):
        raise SystemExit(f"swarm-config: port spec {port!r}: the published and target ranges differ in length")
    return [{"target": t, "published": p, "protocol": proto or "tcp", "mode": "host"} for p, t in zip(pub, tgt)]


def _port_range(text: str) -> list[int]:
    """The ports of "8000" or "8000-8002"."""
    lo, _, hi = text.strip().partition("-")
    first, last = int(lo), int(hi or lo)
    if not 0 < first <= last < 65536:
        raise ValueError(text)
    return list(range(first, last + 1))


def convert(doc: dict, keep_ports: bool, vip: bool = False) -> dict:
    """The stack file for one `docker-compose config` document."""
    for svc in doc.get("services", {}).values():
        for key in DROPPED:
            svc.pop(key, None)
        if not keep_ports:
            svc.pop("ports", None)
        elif not vip and "ports" in svc:
            svc["ports"] = [entry for p in svc["ports"] for entry in _host_mode(p)]
        if not vip:
            svc.setdefault("deploy", {})["endpoint_mode"] = "dnsrr"
    doc["version"] = "3.8"
    doc.pop("name", None)
    return {k: _escape(v) for k, v in doc.items()}


def main() -> int:
    """Read stdin, write stdout."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep-ports", action="store_true", help="keep published ports (all interfaces!)")
    ap.add_argument("--vip", action="store_true",
                    help="swarm's virtual IPs and routing mesh (the kernel must have IPVS)")
    args = ap.parse_args()
    doc = convert(yaml.safe_load(sys.stdin), args.keep_ports, args.vip)
    yaml.safe_dump(doc, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
