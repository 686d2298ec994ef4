"""The kube-proxy and netfilter commands: `netsim proxy rules` and `netsim iptables trace`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

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
