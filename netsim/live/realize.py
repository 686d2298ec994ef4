"""Build a LivePlan in the kernel, reload its rules, and take it all down again.

Every namespace's name is written to the state file before the namespace is created, and any
exception (KeyboardInterrupt included) during `up` removes what was made before it propagates;
a `down` after an `up` that was killed outright finds the names in the state file.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from netsim.live import kernel, server
from netsim.live.plan import OPTIONAL_SYSCTLS, LiveNamespace, LivePlan, VethEnd
from netsim.live.state import LiveError, LiveState, claim, forget, load_state, netns_name
from netsim.live.state import run_dir as _run_dir
from netsim.netns import Route

WORKERS = 8
# rtnetlink numbers for what netsim.netns holds as names (iproute2's rt_scopes, rt_protos)
RT_SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
RT_PROTOS = {"redirect": 1, "kernel": 2, "boot": 3, "static": 4, "ra": 9, "zebra": 11,
             "bird": 12, "dhcp": 16, "bgp": 186}
RT_TABLE_MAIN = 254
RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80
NTF_ROUTER = 0x80
LINK_TIMEOUT = 10.0  # seconds for every device to report carrier


@dataclass(frozen=True, slots=True)
class UpReport:
    state: LiveState
    seconds: float
    sockets: int
    skipped: dict  # protocol -> sockets not opened (e.g. no SCTP in this kernel)


def up(plan: LivePlan, prefix: str, *, inputs: list | None = None,
       overrides: dict | None = None) -> UpReport:
    """Build `plan` in namespaces named after `prefix`; on any failure or interrupt, remove
    what was built and re-raise."""
    start = time.perf_counter()
    kernel.require_root()
    kernel.require_tools(plan.families)
    if plan.uses_ipip and not os.path.exists("/sys/class/net/tunl0"):
        raise LiveError("this kernel has no IPIP tunnels (no tunl0 device; CONFIG_NET_IPIP): "
                        "use --encapsulation None or VXLAN")
    names = {n.id: netns_name(prefix, n.id) for n in plan.namespaces}
    state = claim(prefix)  # refuses a second `up`
    try:
        taken = sorted(n for n in names.values() if kernel.netns_exists(n))
        if taken:  # someone else's: never recorded, so never removed
            raise LiveError(f"a network namespace named {taken[0]} already exists and no live "
                            f"cluster owns it: remove it (ip netns del {taken[0]}) or use "
                            "another --prefix")
        state.inputs, state.overrides = list(inputs or []), dict(overrides or {})
        build(state, plan, names)
        load_rules(state, plan, reload=False)
        ready = start_servers(state, plan)
        state.complete = True
        state.save()
    except BaseException:
        teardown(state)
        raise
    return UpReport(state, time.perf_counter() - start, ready["sockets"], ready["skipped"])


def down(prefix: str) -> list[str]:
    """Remove the live cluster `prefix`: its servers, namespaces and state file. Returns the
    namespaces removed."""
    kernel.require_root()
    return teardown(load_state(prefix))


def teardown(state: LiveState) -> list[str]:
    """Stop the servers, remove the namespaces (their devices go with them), the server log
    and the state file. Returns the namespaces removed."""
    server.stop(state.server_pid)
    removed = [name for name in state.namespaces.values() if kernel.remove_netns(name)]
    _server_log(state.prefix).unlink(missing_ok=True)
    forget(state.prefix)
    return removed


def _server_log(prefix: str) -> Path:
    return _run_dir() / f"{prefix}.server.log"


# ---------------------------------------------------------------- building


def build(state: LiveState, plan: LivePlan, names: dict[str, str]) -> None:
    state.namespaces = names
    state.save()  # before any namespace exists: `down` can always find them
    ipv6 = 6 in plan.families
    for ns in plan.namespaces:
        kernel.create_netns(names[ns.id])
        if ipv6:  # addresses usable at once, as on a node whose addresses settled long ago
            kernel.sysctl(names[ns.id], [("net/ipv6/conf/default/accept_dad", "0"),
                                         ("net/ipv6/conf/all/accept_dad", "0")])
    groups: dict[str, list] = {}
    for a, b in plan.veths:
        groups.setdefault(a.netns, []).append((a, b))
    parallel(lambda item: _veths(names, *item), groups.items())
    parallel(lambda ns: _configure(names[ns.id], ns), plan.namespaces)
    parallel(lambda ns: _wait_links(names[ns.id]), plan.namespaces)


def parallel(fn: Callable, items: Iterable, workers: int = WORKERS) -> None:
    """fn over items on a thread pool; the first failure (or a KeyboardInterrupt while
    waiting) cancels what has not started and waits for what has, then propagates, so that
    no worker is still building once the caller starts tearing down."""
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            for f in futures:
                f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _veths(names: dict[str, str], netns: str, pairs: list[tuple[VethEnd, VethEnd]]) -> None:
    """Create each pair from `netns`, its peer placed straight into the other namespace."""
    with kernel.entered(names[netns]), IPRoute() as ipr:
        for a, b in pairs:
            fd = os.open(kernel.netns_path(names[b.netns]), os.O_RDONLY)
            try:
                peer = {"ifname": b.name, "net_ns_fd": fd, "mtu": b.mtu}
                if b.mac:
                    peer["address"] = b.mac
                args = {"ifname": a.name, "kind": "veth", "mtu": a.mtu, "peer": peer}
                if a.mac:
                    args["address"] = a.mac
                ipr.link("add", **args)
            finally:
                os.close(fd)


def _configure(name: str, ns: LiveNamespace) -> None:
    """Devices, addresses, bridge ports, sysctls, routes, neighbours and FDB entries."""
    state = ns.state
    with kernel.entered(name), IPRoute() as ipr:
        index: dict[str, int] = {}

        def lookup(dev: str) -> int:
            if dev not in index:
                found = ipr.link_lookup(ifname=dev)
                if not found:
                    raise LiveError(f"{name}: no device {dev}")
                index[dev] = found[0]
            return index[dev]

        lo = lookup("lo")
        ipr.link("set", index=lo, state="up")
        for iface in state.interfaces:
            if iface.kind == "loopback":
                continue
            if iface.kind == "bridge":
                ipr.link("add", ifname=iface.name, kind="bridge")
            elif iface.kind == "vxlan":
                args = {"ifname": iface.name, "kind": "vxlan", "vxlan_id": iface.vni,
                        "vxlan_port": iface.port, "vxlan_learning": 0, "mtu": iface.mtu}
                if iface.local:
                    key = "vxlan_local6" if ":" in iface.local else "vxlan_local"
                    args[key] = iface.local
                if iface.link:
                    args["vxlan_link"] = lookup(iface.link)
                if iface.mac:
                    args["address"] = iface.mac
                ipr.link("add", **args)
            elif iface.kind == "ipip" and not ipr.link_lookup(ifname=iface.name):
                raise LiveError(f"{name}: no {iface.name} device (IPIP is not in this kernel)")
            idx = lookup(iface.name)
            ipr.link("set", index=idx, mtu=iface.mtu)
            for cidr in iface.addresses:
                ip, _, plen = cidr.partition("/")
                ipr.addr("add", index=idx, address=ip, prefixlen=int(plen))
        for port, bridge in ns.bridge_ports:
            ipr.link("set", index=lookup(port), master=lookup(bridge))
        for iface in state.interfaces:
            ipr.link("set", index=lookup(iface.name), state="up")
        _write_sysctls(ns.sysctls)
        # device routes first: a gateway must be reachable when its route is added
        for route in sorted(_realised(state.routes), key=lambda r: r.via is not None):
            ipr.route("add", **_route_args(route, lookup))
        for n in state.neighbours:
            if n.state == "PERMANENT":
                ipr.neigh("add", dst=n.ip, lladdr=n.lladdr, ifindex=lookup(n.dev),
                          state=NUD_PERMANENT, flags=NTF_ROUTER if n.router else 0,
                          family=socket.AF_INET6 if ":" in n.ip else socket.AF_INET)
        for e in state.fdb:
            args = {"ifindex": lookup(e.dev), "lladdr": e.mac}
            for key in ("dst", "port", "vni"):
                if getattr(e, key) is not None:
                    args[key] = getattr(e, key)
            ipr.fdb("append", **args)


def _wait_links(name: str, timeout: float = LINK_TIMEOUT) -> None:
    """Wait for every device to be up. A veth reports its carrier through linkwatch, which
    may take up to a second; until then a bridge port does not forward (probes would see
    drops that are only the build settling)."""
    deadline = time.monotonic() + timeout
    with kernel.entered(name), IPRoute() as ipr:
        while True:
            down = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                    if link.get_attr("IFLA_OPERSTATE") not in ("UP", "UNKNOWN")]
            if not down:
                return
            if time.monotonic() > deadline:
                raise LiveError(f"{name}: {', '.join(down)} did not come up in {timeout:.0f}s")
            time.sleep(0.02)


def _realised(routes: Iterable[Route]) -> list[Route]:
    """The routes to add: the kernel makes the connected ones (proto kernel) itself."""
    return [r for r in routes if r.proto != "kernel" and (r.table in (None, "main"))]


def _route_args(route: Route, lookup: Callable[[str], int]) -> dict:
    proto = route.proto or "boot"  # iproute2's default, which `ip route` does not print
    args: dict = {"dst": route.dst, "type": route.type, "table": RT_TABLE_MAIN,
                  "proto": int(proto) if proto.isdigit() else RT_PROTOS[proto],
                  "family": socket.AF_INET6 if route.family == 6 else socket.AF_INET}
    if route.via:
        args["gateway"] = route.via
    if route.dev and not route.drops:  # the kernel hangs reject routes on lo itself
        args["oif"] = lookup(route.dev)
    if route.scope:
        args["scope"] = RT_SCOPES[route.scope]
    if route.onlink:
        args["flags"] = RTNH_F_ONLINK
    if route.src:
        args["prefsrc"] = route.src
    if route.metric is not None:
        args["priority"] = route.metric
    return args


def _write_sysctls(values: Iterable[tuple[str, str]]) -> None:
    """In the thread's current namespace; IPv6 keys are skipped where IPv6 is off, and the
    optional ones where the kernel does not have them per namespace."""
    for key, value in values:
        path = f"/proc/sys/{key}"
        absent = not os.path.exists(path)
        if absent and (key.startswith("net/ipv6/") or key in OPTIONAL_SYSCTLS):
            continue
        with open(path, "w") as f:
            f.write(value)


# ---------------------------------------------------------------- rules and servers


def load_rules(state: LiveState, plan: LivePlan, *, reload: bool = True) -> None:
    """(Re)load every namespace's rules, sets and counters and, on a reload, forget tracked
    connections: what the components hold for this plan, and nothing left from an earlier
    one."""
    def one(ns: LiveNamespace) -> None:
        name = state.namespaces[ns.id]
        families = sorted({f for f, _ in ns.rules})
        for fam in families:
            kernel.empty_tables(name, fam)
        if ns.nfacct:
            kernel.create_nfacct(name, ns.nfacct)
        kernel.load_ipsets(name, ns.ipsets)
        for fam, text in ns.rules:
            kernel.iptables_restore(name, fam, text)
        if reload:
            kernel.flush_conntrack(name)

    parallel(one, [ns for ns in plan.namespaces if ns.rules or ns.ipsets])


def start_servers(state: LiveState, plan: LivePlan) -> dict:
    spec = [server.spec_entry(state.namespaces[ns.id], ns.families, ns.listeners)
            for ns in plan.namespaces if ns.listeners]
    log = _server_log(state.prefix)
    proc = server.start(spec, log)
    state.server_pid = proc.pid
    state.save()
    return server.wait_ready(proc, log)
