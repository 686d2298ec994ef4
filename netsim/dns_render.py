"""Resolutions as people read them: nslookup's block, dig +short's lines, and JSON."""

from __future__ import annotations

from typing import Any

from netsim.dns import Resolution
from netsim.dns_records import Answer, Record
from netsim.dns_server import DNS_PORT


def nslookup(res: Resolution) -> str:
    """The block nslookup (BIND 9) prints, then the search-list candidates and notes."""
    server = res.nameserver
    lines = [f"Server:\t\t{server}", f"Address:\t{server}#{DNS_PORT}"] if server else \
        ["Server:\t\t(the node's resolver: unknown to netsim)"]
    lines.append("")
    query = res.query.removesuffix(".")
    if res.status in ("answer", "forwarded"):
        lines += [_nslookup_record(r) for r in res.records]
        if res.status == "forwarded":
            lines.append(f";; {res.name}: forwarded upstream, answer unknown to netsim")
    elif res.status == "nodata":
        lines.append(f"*** Can't find {query}: No answer")
    else:
        lines.append(f"** server can't find {query}: NXDOMAIN")
    lines.append("")
    lines += tried(res)
    lines += [f"note: {note}" for note in res.notes]
    return "\n".join(lines) + "\n"


def _nslookup_record(r: Record) -> str:
    if r.type in ("A", "AAAA"):
        return f"Name:\t{r.name}\nAddress: {r.data}"
    if r.type == "CNAME":
        return f"{r.name}\tcanonical name = {r.data}."
    if r.type == "SRV":
        return f"{r.name}\tservice = {r.rdata()}"
    return f"{r.name}\tname = {r.data}."


def tried(res: Resolution) -> list[str]:
    """One line per name the resolver asked, with what came back."""
    conf = res.resolv_conf
    if res.from_pod is None:
        head = "asked (no pod: no search list):"
    else:
        search = " ".join(conf.search) or "(none known)"
        head = (f"search path from {res.from_pod} (dnsPolicy {conf.dns_policy}, ndots "
                f"{conf.ndots}, search {search}):")
    width = max(len(a.name) + 1 for a in res.attempts)
    return [head] + [f"  {(a.name + '.').ljust(width)}  {outcome(a)}" for a in res.attempts]


def outcome(a: Answer) -> str:
    """What one question got: NXDOMAIN, NOERROR with its records, or forwarded."""
    if a.status == "nxdomain":
        return "NXDOMAIN"
    if a.status == "nodata":
        return f"NOERROR, no {a.qtype} record (NODATA)"
    if a.status == "forwarded":
        known = "; ".join(f"{r.type} {r.rdata()}" for r in a.records)
        return "forwarded upstream" + (f" after {known}" if known else "") + \
            " (answer unknown to netsim)"
    return "NOERROR: " + ", ".join(f"{r.type} {r.rdata()}" for r in a.records)


def short(res: Resolution) -> str:
    """dig +short: one line of record data per answer record, nothing for NXDOMAIN/NODATA."""
    return "".join(f"{r.rdata()}\n" for r in res.records)


def to_json(res: Resolution) -> dict[str, Any]:
    """The same facts as the text, as data."""
    conf, server = res.resolv_conf, res.server
    return {
        "query": res.query.removesuffix("."),
        "type": res.qtype,
        "from": res.from_pod,
        "status": res.status,
        "rcode": res.rcode,
        "name": res.name,
        "records": [_record(r) for r in res.records],
        "additional": [_record(r) for r in res.additional],
        "addresses": list(res.addresses),
        "nameserver": res.nameserver,
        "resolv_conf": {"dns_policy": conf.dns_policy, "nameservers": list(conf.nameservers),
                        "search": list(conf.search), "ndots": conf.ndots},
        "attempts": [{"name": a.name, "status": a.status, "rcode": a.rcode,
                      "authoritative": a.authoritative,
                      "records": [_record(r) for r in a.records]} for a in res.attempts],
        "dns_service": {
            "service": server.key, "cluster_ips": list(server.cluster_ips),
            "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol}
                      for p in server.ports],
            "pods": list(server.pods), "emulated": server.emulated,
            "corefile": server.config.source, "zones": list(server.config.zones),
            "ttl": server.config.ttl, "pods_mode": server.config.pods,
        },
        "notes": list(res.notes),
    }


def _record(r: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.name, "type": r.type, "ttl": r.ttl, "data": r.rdata()}
    if r.type == "SRV":
        out.update(priority=r.priority, weight=r.weight, port=r.port, target=r.data)
    return out
