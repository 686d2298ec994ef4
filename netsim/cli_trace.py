"""`netsim trace`: one packet hop by hop through the emulated dataplane, and its reply."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from netsim.errors import InputError

OUTPUTS = ("text", "json", "hubble", "pcap")


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    p = sub.add_parser("trace", parents=[cluster], help="trace a packet hop by hop: routes, "
                       "NAT, policy, tunnels, and the reply",
                       description="Trace one packet (and its reply) through the emulated "
                       "dataplane. Exit status: 0 delivered, 1 dropped or rejected.")
    p.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                   help="NS/POD, node/NAME, external or external:IP")
    p.add_argument("--to", dest="destination", metavar="DEST",
                   help="NS/POD:PORT, svc/NS/NAME:PORT (port number or name), "
                   "node/NAME:PORT or IP:PORT")
    p.add_argument("--port", type=int, help="destination port, when --to has none")
    p.add_argument("--protocol", type=str.upper, default=None,
                   choices=("TCP", "UDP", "SCTP", "ICMP"), help="default TCP (or the "
                   "Service port's protocol)")
    p.add_argument("--sport", type=int, help="source port (default 40000)")
    p.add_argument("--http", metavar="REQUEST", help='the HTTP request the connection carries, '
                   'e.g. "GET http://deathstar.default/v1/request-landing": L7 proxies on the '
                   "path (Cilium's HTTP policy) judge it")
    p.add_argument("--family", type=int, choices=(4, 6), help="address family for dual-stack "
                   "sources (default: the source's first address)")
    p.add_argument("--read", metavar="PCAP", help="trace the packets of a pcap file (sent by "
                   "--from) instead of --to")
    p.add_argument("--all-paths", action="store_true", help="follow every load-balancing "
                   "choice; each path with its probability")
    p.add_argument("--endpoint", metavar="NS/POD|IP", help="pin the load-balancing choice: "
                   "follow the path delivered to this pod (or address)")
    p.add_argument("--seed", type=int, default=0, help="which random path to follow "
                   "(default 0; the same seed gives the same path)")
    p.add_argument("--verbosity", choices=("detailed", "summary", "minimal"),
                   default="summary", help="text: every lookup, one line per hop, or only "
                   "rewrites and delivery")
    p.add_argument("-o", "--output", nargs="+", default=["text"], metavar="FORMAT",
                   help="text, json, hubble, or pcap FILE")
    p.set_defaults(func=cmd_trace)


def cmd_trace(args: argparse.Namespace) -> int:
    from netsim.cli import load_cluster
    from netsim.dataplane import build
    from netsim.trace_spec import (
        dns_name,
        ingress_front,
        packet_for,
        resolve_destination,
        resolve_source,
    )
    from netsim.walk import walk

    fmt, out_file = _output(args.output)
    if args.read is None and not args.destination and not args.http:
        raise InputError("required: --to DEST (or --http REQUEST through the ingress "
                         "controller, or --read PCAP)", obj="command line", field="--to")
    cluster = load_cluster(args)
    dp = build(cluster)
    if fmt == "hubble" and dp.cni != "cilium":
        raise InputError("Hubble flows come from Cilium: add --cni cilium, or use -o text",
                         obj="command line", field="-o")
    source = resolve_source(dp, args.source, args.family)
    mode = "all" if args.all_paths else "sample"
    if args.read is not None:
        packets = _read_pcap(args.read, source)
        labels = [f"{p.text()} (packet {i} of {args.read})" for i, p in enumerate(packets, 1)]
    else:
        protocol = args.protocol or _service_protocol(dp, args.destination) or "TCP"
        http = None
        if args.http:
            from netsim.packet import parse_http

            http = parse_http(args.http)
        named = dns_name(args.destination) if args.destination else None
        if named is not None:
            return _trace_name(args, dp, source, named, protocol, http, fmt, out_file)
        if args.destination is None:
            dest = ingress_front(dp, http, source)
        else:
            dest = resolve_destination(dp, args.destination, protocol, source, args.port)
        packets = [packet_for(source, dest, protocol, args.sport, http)]
        labels = [f"{packets[0].text()} from {source.label} to {dest.label}"
                  + (f" carrying {http}" if http else "")]
        for note in dest.notes:
            print(f"note: {note}", file=sys.stderr)
    if args.endpoint:
        traces = [_pinned(walk(dp, p, source.netns, mode="all"), args.endpoint)
                  for p in packets]
    else:
        traces = [walk(dp, p, source.netns, mode=mode, seed=args.seed) for p in packets]
    _render(traces, labels, dp, fmt, out_file, args.verbosity)
    return 0 if all(t.result == "delivered" for t in traces) else 1


def _pinned(trace, endpoint: str):
    """The path of an all-paths trace that reached the given pod or address."""
    from dataclasses import replace

    paths = trace.branches or (trace,)
    for path in paths:
        ends = {path.delivered_to} | {h.packet.dst for h in path.request_hops
                                      if h.action == "delivered"}
        if endpoint in ends or any(e and e.startswith(endpoint + ":") for e in ends):
            return replace(path, branches=())
    reached = sorted({p.delivered_to or p.result for p in paths})
    raise InputError(f"no path reaches {endpoint!r} (paths end at: {', '.join(reached)})",
                     obj="command line", field="--endpoint")


def _trace_name(args, dp, source, named, protocol, http, fmt, out_file) -> int:
    """--to NAME[:PORT] or an http(s) URL: the DNS lookup, then the connection."""
    from netsim.packet import HttpRequest
    from netsim.trace_dns import lookup, with_lookup
    from netsim.trace_spec import Endpoint, packet_for
    from netsim.walk import walk

    name, port, path = named
    port = args.port or port
    if port is None and protocol != "ICMP":
        raise InputError(f"{args.destination!r} needs a port (e.g. {name}:80) or --port",
                         obj="command line", field="--to")
    if path is not None and http is None:
        scheme = "https" if args.destination.startswith("https") else "http"
        http = HttpRequest("GET", name, path, scheme)
    family = 6 if ":" in source.address else 4
    addresses, hops, failed = lookup(dp, source.netns, source.address, name, family,
                                     seed=args.seed)
    label = f"{name}:{port} from {source.label}" + (f" carrying {http}" if http else "")
    if failed is not None:
        trace = failed
    else:
        dest = Endpoint(None, addresses[0], port or 0, f"{name} ({addresses[0]})")
        packet = packet_for(source, dest, protocol, args.sport, http)
        mode = "all" if args.all_paths else "sample"
        trace = with_lookup(walk(dp, packet, source.netns, mode=mode, seed=args.seed), hops)
        label = f"{packet.text()} from {source.label} to {dest.label}" + (
            f" carrying {http}" if http else "")
    _render([trace], [label], dp, fmt, out_file, args.verbosity)
    return 0 if trace.result == "delivered" else 1


def _output(values: list[str]) -> tuple[str, str | None]:
    fmt = values[0]
    if fmt not in OUTPUTS:
        raise InputError(f"unknown output {fmt!r}: one of {', '.join(OUTPUTS)}",
                         obj="command line", field="-o")
    if fmt == "pcap":
        if len(values) != 2:
            raise InputError("pcap needs a file: -o pcap FILE", obj="command line", field="-o")
        return fmt, values[1]
    if len(values) != 1:
        raise InputError(f"{fmt} takes no file", obj="command line", field="-o")
    return fmt, None


def _service_protocol(dp, destination: str | None) -> str | None:
    """A Service port named on --to carries its own protocol."""
    if not destination or not destination.startswith("svc/"):
        return None
    name, _, port = destination[4:].rpartition(":")
    ns, _, svc_name = name.partition("/")
    svc = dp.cluster.service(ns, svc_name)
    if svc is None:
        return None
    found = [p for p in svc.ports if str(p.port) == port or p.name == port]
    protocols = {p.protocol for p in found}
    return protocols.pop() if len(protocols) == 1 else None


def _header(dp, label: str) -> str:
    cluster = dp.cluster
    cni = cluster.settings.cni
    if cni == "calico":
        cni += f" {cluster.settings.calico_encapsulation}"
    else:
        cni += f" {cluster.settings.cilium_routing_mode}"
    proxy = ("Cilium kube-proxy replacement" if dp.proxy_mode == "none" and dp.cni == "cilium"
             else f"kube-proxy {dp.proxy_mode}")
    return f"trace: {label}\ndataplane: {cni}, {proxy}"


def _render(traces, labels, dp, fmt: str, out_file: str | None, verbosity: str) -> None:
    from netsim.trace_render import trace_json, trace_text, write_pcap

    if fmt == "json":
        data = [trace_json(t) for t in traces]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    elif fmt == "pcap":
        count = 0
        if len(traces) > 1:
            raise InputError("-o pcap writes one trace; use --to rather than --read",
                             obj="command line", field="-o")
        count = write_pcap(traces[0], out_file)
        print(f"wrote {count} packets ({len(traces[0].hops)} hops) to {out_file}",
              file=sys.stderr)
        print(trace_text(traces[0], "minimal", _header(dp, labels[0])), end="")
    elif fmt == "hubble":
        from netsim.trace_hubble import hubble_lines

        for t in traces:
            for line in hubble_lines(dp, t):
                print(line)
    else:
        for i, (t, label) in enumerate(zip(traces, labels, strict=True)):
            if i:
                print()
            print(trace_text(t, verbosity, _header(dp, label)), end="")


def _read_pcap(path: str, source) -> list:
    from scapy.utils import rdpcap

    from netsim.packet import from_scapy

    try:
        found = rdpcap(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read pcap: {exc}", obj=path, field="--read") from None
    packets = []
    for i, pkt in enumerate(found, 1):
        try:
            p = from_scapy(pkt)
        except ValueError as exc:
            raise InputError(f"packet {i}: {exc}", obj=path, field="--read") from None
        if p.src != source.address:
            raise InputError(f"packet {i} comes from {p.src}, not from --from "
                             f"{source.label} ({source.address})", obj=path, field="--read")
        packets.append(p)
    if not packets:
        raise InputError("the pcap holds no packets", obj=path, field="--read")
    return packets
