"""The kube-proxy and netfilter commands: `netsim proxy rules` and `netsim iptables trace`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from netsim.cli_io import read_input_text
from netsim.errors import InputError
from netsim.model import IPV4, IPV6, family

FAMILIES = {"ipv4": IPV4, "ipv6": IPV6}


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    proxy = sub.add_parser("proxy", help="kube-proxy's rules for a node")
    verbs = proxy.add_subparsers(dest="proxy_command", required=True, metavar="VERB")
    rules = verbs.add_parser("rules", parents=[cluster], help="what kube-proxy programs on a "
                             "node: iptables-restore payload, or IPVS state")
    rules.add_argument("--node", required=True, help="the node whose kube-proxy to emulate")
    rules.add_argument("--mode", choices=("iptables", "ipvs"),
                       help="proxy mode (default: the KubeProxyConfiguration's, else "
                       "NetsimConfig's)")
    rules.add_argument("--family", choices=tuple(FAMILIES), default="ipv4")
    rules.add_argument("-o", "--output", choices=("restore", "save", "sorted", "ipvsadm",
                                                  "ipset", "all"),
                       help="iptables: restore (the payload kube-proxy hands to "
                       "iptables-restore, default), save (as iptables-save shows the node), "
                       "sorted (kube-proxy's unit-test order); ipvs: ipvsadm, ipset, restore, "
                       "save, all (default)")
    rules.set_defaults(func=cmd_proxy_rules)


def cmd_proxy_rules(args: argparse.Namespace) -> int:
    from netsim.cli import load_cluster
    from proxy.kube_proxy.options import options_for

    cluster = load_cluster(args)
    fam = FAMILIES[args.family]
    options = options_for(cluster, args.node, fam, args.mode)
    if not any(family(c.split("/")[0]) == fam for c in cluster.addressing.service_cidrs):
        raise InputError(f"the cluster has no {fam} service CIDR", obj="command line",
                         field="--family")
    if options.mode == "ipvs":
        from proxy.kube_proxy.ipvs import compile_ipvs

        state = compile_ipvs(cluster, options)
        out = args.output or "all"
        parts = {"ipvsadm": state.ipvsadm_text, "ipset": state.ipset_text,
                 "restore": state.restore_text, "save": state.save_text}
        if out == "sorted":
            raise InputError("sorted is for iptables mode", obj="command line", field="-o")
        if out == "all":
            sys.stdout.write("# ipvsadm -Ln\n" + parts["ipvsadm"]() + "\n# ipset list\n" +
                             parts["ipset"]() + "\n# iptables-save\n" + parts["save"]())
        else:
            sys.stdout.write(parts[out]())
        return 0
    from proxy.kube_proxy.iptables import compile_iptables

    rules = compile_iptables(cluster, options)
    out = args.output or "restore"
    if out in ("ipvsadm", "ipset", "all"):
        raise InputError(f"{out} is for ipvs mode", obj="command line", field="-o")
    sys.stdout.write({"restore": rules.restore_text, "save": rules.save_text,
                      "sorted": rules.sorted_text}[out]())
    return 0


# ---------------------------------------------------------------- iptables trace


def register_iptables(sub: Any) -> None:
    ipt = sub.add_parser("iptables", help="run packets through iptables rules (yours or ours)")
    verbs = ipt.add_subparsers(dest="iptables_command", required=True, metavar="VERB")
    trace = verbs.add_parser("trace", help="trace a packet through an iptables-save dump, as "
                             "iptables -j TRACE would report it")
    trace.add_argument("--save", required=True, metavar="FILE",
                       help="iptables-save (or iptables-restore) text, - for stdin")
    trace.add_argument("--packet", required=True, metavar="FLOW",
                       help='e.g. "tcp 10.0.0.5:40000 -> 10.96.0.10:80"')
    trace.add_argument("--hook", choices=("PREROUTING", "OUTPUT"), default="PREROUTING",
                       help="where the packet enters: from the network (PREROUTING, then "
                       "INPUT or FORWARD) or from a local process (OUTPUT)")
    trace.add_argument("--in-iface", metavar="IF", help="interface it arrives on")
    trace.add_argument("--out-iface", metavar="IF", help="interface it leaves by")
    trace.add_argument("--local", action="append", default=[], metavar="ADDR",
                       help="an address of this host (addrtype LOCAL; repeatable)")
    trace.add_argument("--iface", action="append", default=[], metavar="NAME=ADDR",
                       help="an interface and its address (MASQUERADE, REDIRECT; repeatable)")
    trace.add_argument("--route", action="append", default=[], metavar="CIDR=IF",
                       help="where packets to CIDR leave (repeatable; longest prefix wins; "
                       "default: --out-iface, else the only --iface)")
    trace.add_argument("--ipsets", metavar="FILE", help="`ipset save` or `ipset list` output "
                       "for -m set matches")
    trace.add_argument("--mark", default="0", help="the packet's mark (e.g. 0x4000)")
    trace.add_argument("--seed", type=int, help="follow one random branch (default: all)")
    trace.add_argument("--lenient", action="store_true", help="keep rules with unsupported "
                       "matches as never-matching (reported) instead of failing")
    trace.add_argument("-o", "--output", choices=("text", "json"), default="text")
    trace.set_defaults(func=cmd_iptables_trace)


def cmd_iptables_trace(args: argparse.Namespace) -> int:
    import json

    from netsim.packet import parse_flow
    from proxy import netfilter

    flow = parse_flow(args.packet)
    ruleset = netfilter.parse_ruleset(read_input_text(args.save, "--save"), args.save,
                                      strict=not args.lenient)
    interfaces: dict[str, list[str]] = {}
    for item in args.iface:
        name, sep, addr = item.partition("=")
        if not sep or not name or not addr:
            raise InputError(f"must be NAME=ADDR, got {item!r}", obj="command line",
                             field="--iface")
        interfaces.setdefault(name, []).append(addr)
    ipsets = None
    if args.ipsets:
        try:
            ipsets = netfilter.parse_ipset_save(read_input_text(args.ipsets, "--ipsets"))
        except ValueError as exc:
            raise InputError(f"{args.ipsets}: not ipset save/list output: {exc}",
                             obj="command line", field="--ipsets") from None
    try:
        mark = int(args.mark, 0)
    except ValueError:
        raise InputError(f"not a number: {args.mark!r}", obj="command line",
                         field="--mark") from None
    default_iface = args.out_iface or (next(iter(interfaces)) if len(interfaces) == 1 else None)
    route = _router(args.route, default_iface)
    try:
        ctx = netfilter.Context(local_addresses=tuple(args.local),
                                interfaces={k: tuple(v) for k, v in interfaces.items()},
                                ipsets=ipsets, seed=args.seed or 0, route=route)
        packet = netfilter.Packet(src=flow.src, dst=flow.dst, protocol=flow.protocol,
                                  sport=flow.sport, dport=flow.dport, in_iface=args.in_iface,
                                  out_iface=args.out_iface, mark=mark)
    except ValueError as exc:
        raise InputError(str(exc), obj="command line", field="--packet") from None
    path = "inbound" if args.hook == "PREROUTING" else "output"
    mode = "sample" if args.seed is not None else "all"
    branches = netfilter.traverse(ruleset, packet, path, ctx, mode=mode)
    if args.output == "json":
        print(json.dumps([_branch_json(b) for b in branches], indent=2))
        return 0
    for i, b in enumerate(branches, 1):
        print(f"branch {i} of {len(branches)} (p={b.probability:.4f}): {_verdict(b)}  "
              f"{_flow_text(b.packet)}")
        for line in b.trace_lines():
            print(f"  {line}")
        for note in (*b.notes, *(f"unsupported: {u}" for u in b.unsupported)):
            print(f"  note: {note}")
    return 0


def _router(routes: list[str], default: str | None):
    """The out interface for a packet: the longest --route prefix holding its destination."""
    import ipaddress

    table = []
    for item in routes:
        cidr, sep, iface = item.partition("=")
        try:
            table.append((ipaddress.ip_network(cidr, strict=False), iface))
        except ValueError:
            sep = ""
        if not sep or not iface:
            raise InputError(f"must be CIDR=IFACE, got {item!r}", obj="command line",
                             field="--route")
    table.sort(key=lambda r: -r[0].prefixlen)

    def route(packet: Any) -> str | None:
        addr = ipaddress.ip_address(packet.dst)
        return next((iface for net, iface in table if addr in net), default)
    return route


def _verdict(b: Any) -> str:
    v = b.verdict
    return v.kind + (f" --reject-with {v.reject_with}" if v.reject_with else "")


def _flow_text(p: Any) -> str:
    def end(ip: str, port: int) -> str:
        return (f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}") if port else ip
    iface = f" out {p.out_iface}" if p.out_iface else ""
    return f"{p.protocol} {end(p.src, p.sport)} -> {end(p.dst, p.dport)}{iface}" + (
        f" mark {p.mark:#x}" if p.mark else "")


def _branch_json(b: Any) -> dict:
    return {"verdict": _verdict(b), "probability": b.probability, "packet": _flow_text(b.packet),
            "ctState": b.ct_state, "trace": b.trace_lines(), "notes": list(b.notes),
            "unsupported": list(b.unsupported)}
