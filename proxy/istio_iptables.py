"""The iptables-restore text istio-iptables (istio-init or istio-cni) writes into a pod's netns.

Rules and their order follow istio/istio tools/istio-iptables/pkg/capture/run.go and its
golden files (tools/istio-iptables/pkg/capture/testdata/*.golden), whose restore format is
`* <table>`, one `-N` per Istio chain in order of first use, the rules in the order the
builder added them (`-I` kept as written), `COMMIT`; tables raw, mangle, nat. Excluded port
lists become `-m multiport --dports` rules of at most 15 ports, a single port plain
`--dport`, as the current goldens show (inbound-wildcard-exclude, outbound-ports-exclude,
outbound-ports-exclude-single); `multiport=False` gives the one-rule-per-port form of earlier
releases. DNS capture (ISTIO_META_DNS_CAPTURE), owner-group filters and DROP_INVALID are off
by default in the injection template and are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netsim.model import Pod
from proxy.istio_inject import CaptureOptions, Injection

# Chains and marks (tools/istio-iptables/pkg/constants/constants.go).
ISTIO_INBOUND = "ISTIO_INBOUND"
ISTIO_REDIRECT = "ISTIO_REDIRECT"
ISTIO_IN_REDIRECT = "ISTIO_IN_REDIRECT"
ISTIO_OUTPUT = "ISTIO_OUTPUT"
ISTIO_DIVERT = "ISTIO_DIVERT"
ISTIO_TPROXY = "ISTIO_TPROXY"
INBOUND_TPROXY_MARK = "1337"
OUTBOUND_MARK = "1338"  # TPROXY: Envoy -> app over lo, not to be diverted again
TABLE_ORDER = ("raw", "mangle", "nat", "filter")
BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
MULTIPORT_MAX = 15  # xt_multiport's XT_MULTI_PORTS


@dataclass(frozen=True, slots=True)
class _Family:
    """Addresses that differ between the iptables and ip6tables rule sets."""

    version: int
    inbound_source: str  # Envoy's source address when it hands inbound traffic to the app
    loopback: str  # HostIPv4LoopbackCidr default / ::1


FAMILIES = {4: _Family(4, "127.0.0.6/32", "127.0.0.1/32"), 6: _Family(6, "::6/128", "::1/128")}


@dataclass
class _Builder:
    """Rules per table in the order added, plus the Istio chains they create (rule builder)."""

    tables: dict[str, list[str]] = field(default_factory=dict)
    chains: dict[str, list[str]] = field(default_factory=dict)

    def _add(self, table: str, chain: str, line: str) -> None:
        known = self.chains.setdefault(table, [])
        if chain not in BUILTIN_CHAINS and chain not in known:
            known.append(chain)
        self.tables.setdefault(table, []).append(line)

    def append(self, table: str, chain: str, rule: str) -> None:
        self._add(table, chain, f"-A {chain} {rule}")

    def insert(self, table: str, chain: str, position: int, rule: str) -> None:
        self._add(table, chain, f"-I {chain} {position} {rule}")

    def restore_text(self) -> str:
        out = []
        for table in TABLE_ORDER:
            if table not in self.tables:
                continue
            out.append(f"* {table}")
            out += [f"-N {chain}" for chain in self.chains.get(table, ())]
            out += self.tables[table]
            out.append("COMMIT")
        return "\n".join(out) + "\n" if out else ""


def capture_rules(injection: Injection, pod: Pod, family: int = 4, *,
                  multiport: bool = True) -> str:
    """iptables-restore (family 4) or ip6tables-restore (6) text for the pod's capture.

    Empty when the pod has no sidecar or its interception mode is NONE. The text does not
    depend on the pod's addresses: istio-iptables matches on ports, owners and loopback only
    (`pod` keeps the call site explicit about whose namespace the rules go to).
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be 4 or 6, got {family!r}")
    if not injection.injected or injection.capture is None:
        return ""
    return _build(injection.capture, FAMILIES[family], multiport).restore_text()


def _build(opts: CaptureOptions, fam: _Family, multiport: bool) -> _Builder:
    """run.go Run(), in its order."""
    b = _Builder()
    tproxy = opts.interception_mode == "TPROXY"
    include_v4, include_v6 = _split_cidrs(opts.include_outbound_cidrs)
    exclude_v4, exclude_v6 = _split_cidrs(opts.exclude_outbound_cidrs)
    include = include_v4 if fam.version == 4 else include_v6
    exclude = exclude_v4 if fam.version == 4 else exclude_v6
    # run.go: "If loopback explicitly set via OutboundIPRangesInclude, then don't return"
    loopback_included = any(_is_loopback(c) for c in include_v4 + include_v6)

    for iface in opts.exclude_interfaces:  # shortCircuitExcludeInterfaces
        b.append("nat", "PREROUTING", f"-i {iface} -j RETURN")
        b.append("nat", "OUTPUT", f"-o {iface} -j RETURN")
    if tproxy:
        for iface in opts.exclude_interfaces:
            b.append("mangle", "PREROUTING", f"-i {iface} -j RETURN")
            b.append("mangle", "OUTPUT", f"-o {iface} -j RETURN")
    for iface in opts.reroute_interfaces:  # shortCircuitKubeInternalInterface
        b.insert("nat", "PREROUTING", 1, f"-i {iface} -j RETURN")

    b.append("nat", ISTIO_INBOUND, f"-p tcp --dport {opts.inbound_tunnel_port} -j RETURN")
    b.append("nat", ISTIO_REDIRECT, f"-p tcp -j REDIRECT --to-ports {opts.proxy_port}")
    b.append("nat", ISTIO_IN_REDIRECT,
             f"-p tcp -j REDIRECT --to-ports {opts.inbound_capture_port}")
    _inbound(b, opts, fam, tproxy, multiport)

    b.append("nat", "OUTPUT", f"-j {ISTIO_OUTPUT}")
    for ports in _port_matches(opts.exclude_outbound_ports, multiport):
        b.append("nat", ISTIO_OUTPUT, f"-p tcp {ports} -j RETURN")
        b.append("nat", ISTIO_OUTPUT, f"-p udp {ports} -j RETURN")
    b.append("nat", ISTIO_OUTPUT, f"-o lo -s {fam.inbound_source} -j RETURN")
    for flag, ids in (("--uid-owner", opts.proxy_uids), ("--gid-owner", opts.proxy_gids)):
        for owner in ids:
            # the app called its own VIP: client Envoy -> server Envoy -> app
            b.append("nat", ISTIO_OUTPUT,
                     f"-o lo ! -d {fam.loopback} -p tcp ! --dport {opts.inbound_tunnel_port} "
                     f"-m owner {flag} {owner} -j {ISTIO_IN_REDIRECT}")
            if not loopback_included:  # app -> app over lo: not captured
                b.append("nat", ISTIO_OUTPUT, f"-o lo -m owner ! {flag} {owner} -j RETURN")
            b.append("nat", ISTIO_OUTPUT, f"-m owner {flag} {owner} -j RETURN")
    b.append("nat", ISTIO_OUTPUT, f"-d {fam.loopback} -j RETURN")
    for cidr in exclude:
        b.append("nat", ISTIO_OUTPUT, f"-d {cidr} -j RETURN")
    for port in opts.include_outbound_ports:  # handleOutboundPortsInclude
        b.append("nat", ISTIO_OUTPUT, f"-p tcp --dport {port} -j {ISTIO_REDIRECT}")
    if include == ("*",):  # handleOutboundIncludeRules
        b.append("nat", ISTIO_OUTPUT, f"-j {ISTIO_REDIRECT}")
        for iface in opts.reroute_interfaces:
            b.insert("nat", "PREROUTING", 1, f"-i {iface} -j {ISTIO_REDIRECT}")
    else:
        for cidr in include:
            for iface in opts.reroute_interfaces:
                b.insert("nat", "PREROUTING", 1, f"-i {iface} -d {cidr} -j {ISTIO_REDIRECT}")
            b.append("nat", ISTIO_OUTPUT, f"-d {cidr} -j {ISTIO_REDIRECT}")
    if tproxy:
        _tproxy_marks(b, opts, fam)
    return b


def _inbound(b: _Builder, opts: CaptureOptions, fam: _Family, tproxy: bool,
             multiport: bool) -> None:
    """handleInboundPortsInclude: PREROUTING to ISTIO_INBOUND, exclusions, then the capture."""
    if not opts.include_inbound_ports:
        return  # an empty -b captures no inbound traffic
    table = "mangle" if tproxy else "nat"
    established = "-m conntrack --ctstate RELATED,ESTABLISHED"
    if tproxy:
        b.append("mangle", ISTIO_DIVERT, f"-j MARK --set-mark {INBOUND_TPROXY_MARK}")
        b.append("mangle", ISTIO_DIVERT, "-j ACCEPT")
        b.append("mangle", ISTIO_TPROXY,
                 f"! -d {fam.loopback} -p tcp -j TPROXY --tproxy-mark "
                 f"{INBOUND_TPROXY_MARK}/0xffffffff --on-port {opts.inbound_capture_port}")
    b.append(table, "PREROUTING", f"-p tcp -j {ISTIO_INBOUND}")
    if opts.include_inbound_ports == ("*",):
        for ports in _port_matches(opts.exclude_inbound_ports, multiport):
            b.append(table, ISTIO_INBOUND, f"-p tcp {ports} -j RETURN")
        if tproxy:
            b.append("mangle", ISTIO_INBOUND, f"-p tcp {established} -j {ISTIO_DIVERT}")
            b.append("mangle", ISTIO_INBOUND, f"-p tcp -j {ISTIO_TPROXY}")
        else:
            b.append("nat", ISTIO_INBOUND, f"-p tcp -j {ISTIO_IN_REDIRECT}")
        return
    for port in opts.include_inbound_ports:
        if tproxy:
            b.append("mangle", ISTIO_INBOUND,
                     f"-p tcp --dport {port} {established} -j {ISTIO_DIVERT}")
            b.append("mangle", ISTIO_INBOUND, f"-p tcp --dport {port} -j {ISTIO_TPROXY}")
        else:
            b.append("nat", ISTIO_INBOUND, f"-p tcp --dport {port} -j {ISTIO_IN_REDIRECT}")


def _tproxy_marks(b: _Builder, opts: CaptureOptions, fam: _Family) -> None:
    """TPROXY mode's connection marks, so replies and Envoy->app traffic are not diverted."""
    mark = INBOUND_TPROXY_MARK
    b.append("mangle", "PREROUTING", f"-p tcp -m mark --mark {mark} -j CONNMARK --save-mark")
    b.append("mangle", "OUTPUT", f"-p tcp -o lo -m mark --mark {mark} -j RETURN")
    for flag, ids in (("--uid-owner", opts.proxy_uids), ("--gid-owner", opts.proxy_gids)):
        for owner in ids:
            b.append("mangle", "OUTPUT", f"! -d {fam.loopback} -p tcp -o lo -m owner {flag} "
                                         f"{owner} -j MARK --set-mark {OUTBOUND_MARK}")
    b.append("mangle", "OUTPUT", f"-p tcp -m connmark --mark {mark} -j CONNMARK --restore-mark")
    b.insert("mangle", ISTIO_INBOUND, 1, f"-p tcp -m mark --mark {mark} -j RETURN")
    b.insert("mangle", ISTIO_INBOUND, 2, f"-p tcp -s {fam.inbound_source} -i lo -j RETURN")
    b.insert("mangle", ISTIO_INBOUND, 3, f"-p tcp -i lo -m mark ! --mark {OUTBOUND_MARK} -j RETURN")


def _port_matches(ports: tuple[str, ...], multiport: bool) -> list[str]:
    """Port matches for a RETURN list: one --dport, or multiport groups of at most 15."""
    if not multiport:
        return [f"--dport {p}" for p in ports]
    groups = [ports[i:i + MULTIPORT_MAX] for i in range(0, len(ports), MULTIPORT_MAX)]
    return [f"--dport {g[0]}" if len(g) == 1 else f"-m multiport --dports {','.join(g)}"
            for g in groups]


def _split_cidrs(cidrs: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """separateV4V6: the wildcard stands for both families."""
    if cidrs == ("*",):
        return ("*",), ("*",)
    return (tuple(c for c in cidrs if ":" not in c), tuple(c for c in cidrs if ":" in c))


def _is_loopback(cidr: str) -> bool:
    if cidr == "*":
        return False
    addr = cidr.split("/", 1)[0]
    return addr.startswith("127.") or addr == "::1"
