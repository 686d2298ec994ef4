"""The netfilter interpreter: parse iptables-save text and walk packets through its hooks.

    ruleset = parse_ruleset(text, "node1.rules")
    branches = traverse(ruleset, Packet("10.244.1.5", "10.96.0.10", "udp", 40000, 53),
                        "forward", Context(local_addresses=("192.168.1.11",)))

Each Branch has a verdict, the rewritten packet, its probability, its connection and the
rules hit as `iptables -j TRACE` would report them.
"""

from __future__ import annotations

from .conntrack import (
    ConntrackEntry,
    ConntrackTable,
    CtRef,
    FlowTuple,
    NthCounters,
    PersistentMap,
    RecentTable,
)
from .evaluate import HOOK_STAGES, PATHS, evaluate_chain, evaluate_hook, program, traverse
from .ipset import IPSet, parse_ipset_save
from .model import HOOKS, TABLE_CHAINS, Chain, OpaqueRule, Rule, Ruleset, Table
from .packet import Context, Packet, Physdev, Socket, VirtualService
from .parse import parse_ruleset
from .trace import ACCEPT, CONTINUE, DROP, REJECT, Branch, TraceEntry, Verdict

__all__ = [
    "ACCEPT", "CONTINUE", "DROP", "HOOKS", "HOOK_STAGES", "PATHS", "REJECT", "TABLE_CHAINS",
    "Branch", "Chain", "ConntrackEntry", "ConntrackTable", "Context", "CtRef", "FlowTuple",
    "IPSet", "NthCounters", "OpaqueRule", "Packet", "PersistentMap", "Physdev", "RecentTable",
    "Rule", "Ruleset", "Socket", "Table", "TraceEntry", "Verdict", "VirtualService",
    "evaluate_chain", "evaluate_hook", "parse_ipset_save", "parse_ruleset", "program",
    "traverse",
]
