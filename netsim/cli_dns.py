"""`netsim dns`: resolve a name as a pod would, and show what CoreDNS answered to each try."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from netsim.dns_records import QTYPES

OUTPUTS = ("text", "json", "short")
CLI_DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default")


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    p = sub.add_parser("dns", parents=[cluster], help="resolve a name as a pod would: its "
                       "search path, and what the cluster DNS answers",
                       description="Resolve NAME as CoreDNS's kubernetes plugin answers it "
                       "and, with --from, through that pod's resolv.conf and search path. "
                       "Exit status: 0 answered (or forwarded upstream, whose answer netsim "
                       "does not know), 1 NXDOMAIN or no record of the type.")
    p.add_argument("name", metavar="NAME", help="a name (redis, redis.shop, "
                   "redis.shop.svc.cluster.local.) or an address (for its PTR name)")
    p.add_argument("--from", dest="source", metavar="NS/POD", help="resolve from this pod "
                   "(its search list and ndots); without it the name is asked as given")
    p.add_argument("-t", "--type", dest="qtype", type=str.upper, choices=QTYPES,
                   help="record type (default A; PTR for an address)")
    p.add_argument("--dns-policy", choices=CLI_DNS_POLICIES, help="instead of the pod's own "
                   "spec.dnsPolicy (a what-if)")
    p.add_argument("-o", "--output", choices=OUTPUTS, default="text",
                   help="text (nslookup-like, with the search path), json, or short "
                   "(as dig +short)")
    p.set_defaults(func=cmd_dns)


def cmd_dns(args: argparse.Namespace) -> int:
    from netsim import dns_render
    from netsim.cli import load_cluster
    from netsim.dns import resolve

    qtype = args.qtype or ("PTR" if _is_address(args.name) else "A")
    cluster = load_cluster(args)
    res = resolve(cluster, args.name, qtype, args.source, dns_policy=args.dns_policy)
    if args.output == "json":
        print(json.dumps(dns_render.to_json(res), indent=2))
    elif args.output == "short":
        sys.stdout.write(dns_render.short(res))
        if res.status == "forwarded":
            print(f";; {res.name}: forwarded upstream, answer unknown to netsim",
                  file=sys.stderr)
    else:
        sys.stdout.write(dns_render.nslookup(res))
    return 0 if res.status in ("answer", "forwarded") else 1


def _is_address(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True
