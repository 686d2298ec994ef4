"""What an evaluation returns: branches, each with its verdict, packet, state and TRACE lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .conntrack import ConntrackEntry, ConntrackTable, NthCounters, RecentTable
from .packet import Packet

ACCEPT, DROP, REJECT, CONTINUE = "ACCEPT", "DROP", "REJECT", "CONTINUE"


class TraceEntry(NamedTuple):
    """One line of what `iptables -j TRACE` would report: table:chain:kind:number and the rule.

    kind is "rule" (a rule matched), "return" (fell off the end of a user chain), "policy"
    (fell off, or RETURNed from, a built-in chain) or "unsupported" (an opaque rule was
    reached). number is the rule's 1-based position; for return/policy it is one past the last
    rule, as the kernel counts its implicit tail rule.
    """

    hook: str
    table: str
    chain: str
    kind: str
    number: int
    rule: object | None = None  # the Rule (for rule/unsupported entries)
    policy: str | None = None

    @property
    def text(self) -> str:
        """The rule as iptables-save prints it, or `-P CHAIN POLICY` for a policy entry."""
        if self.rule is not None:
            return self.rule.text
        if self.policy is not None:
            return f"-P {self.chain} {self.policy}"
        return ""

    def __str__(self) -> str:
        head = f"{self.table}:{self.chain}:{self.kind}:{self.number}"
        text = self.text
        return f"{head} {text}" if text else head


@dataclass(frozen=True, slots=True)
class Verdict:
    """How the walk ended: ACCEPT, DROP or REJECT (CONTINUE only from evaluate_chain).

    `by` is the trace entry that decided (a rule, or a policy entry when a built-in chain's
    policy did): for DROP and REJECT the one that ended the walk, for ACCEPT the filter
    table's last word (else the last table's); None when no table on the path had a say.
    """

    kind: str
    hook: str | None = None
    by: TraceEntry | None = None
    reject_with: str | None = None

    @property
    def by_policy(self) -> bool:
        return self.by is not None and self.by.kind == "policy"

    def __str__(self) -> str:
        text = self.kind if self.reject_with is None else f"{self.kind} ({self.reject_with})"
        return f"{text} at {self.hook}" if self.hook else text


@dataclass(frozen=True, slots=True)
class Branch:
    """One possible outcome. Probabilities of all branches of an evaluation sum to 1.

    packet: the packet as it leaves (NAT, marks applied; attached to its connection).
    conntrack_entry / ct_state: its connection and the state the matches saw.
    conntrack / recent / counters: the state after this branch (pass on with Context.advance).
    tproxy: the socket (address, port) TPROXY handed the packet to.
    unsupported: opaque rules reached and matches that lacked context (never matched).
    """

    verdict: Verdict
    packet: Packet
    probability: float
    trace: tuple[TraceEntry, ...]
    conntrack_entry: ConntrackEntry | None
    ct_state: str
    conntrack: ConntrackTable
    recent: RecentTable
    counters: NthCounters
    hooks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    unsupported: tuple[str, ...] = ()
    tproxy: tuple[str, int] | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict.kind == ACCEPT

    def trace_lines(self) -> list[str]:
        return [str(entry) for entry in self.trace]
