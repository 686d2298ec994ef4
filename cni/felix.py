"""Calico felix's iptables dataplane for one node: its chains (iptables-restore text) and IP sets.

The cluster's policies are converted into Calico's model (policies.calico, as libcalico-go
converts them) and compiled as felix's rule renderer does (felix/rules: static.go,
endpoints.go, policy.go, dispatch.go, nat.go; names in rule_defs.go). The result is meant to
be appended to kube-proxy's text and parsed by proxy.netfilter (iptables-restore --noflush
semantics), so a packet's walk through the node runs felix's real chains:

    rules = compile_felix(cluster, "node-1")
    ruleset = parse_ruleset(kube_proxy_text + rules.restore_text)
    traverse(ruleset, packet, "forward", Context(ipsets=rules.ipsets, ...))

Version emulated: felix with policy IDs `<kind>/<namespace>/<name>` (felix/types/policy_id.go,
e.g. `cali-pi-knp/default/allow-db`), mark bits accept 0x10000, pass 0x20000, drop 0x40000,
scratch0 0x80000, scratch1 0x100000 (IptablesMarkMask 0xffff0000), tiers with a
defaultAction (the admin tiers Pass), flow logs off (no NFLOG rules), iptables (not nftables)
mode. KubeIPVSSupportEnabled when kube-proxy runs in IPVS mode (felix detects kube-ipvs0):
the endpoint marks (the mask's remaining bits, 0xffe00000), cali-forward-check,
cali-forward-endpoint-mark, cali-set-endpoint-mark, cali-from-endpoint-mark and a cali-sm-
chain per workload (felix_epmark), and the cali40this-host set they match.

Assumptions where manifests are silent, each stated once here:
- FelixConfiguration defaults, except DefaultEndpointToHostAction=ACCEPT, which Calico's
  install manifests (calico.yaml, the operator) set: workload -> host traffic that passes
  the workload's egress policy is accepted (felix's own default is DROP).
- No host endpoints, failsafe ports only matter for them, no floating IPs, no
  serviceClusterIPs to block (cali-cidr-block empty), AllowVXLAN/IPIPPacketsFromWorkloads
  false (fw chains drop encapsulated packets from pods), FilterDenyAction DROP, no
  `--random-fully` on MASQUERADE (felix adds it when the kernel supports it).
- IP pools: the cluster's IPPool objects if any (natOutgoing as written), else the pod
  CIDRs with natOutgoing on, as calico-node creates its default pools
  (CALICO_IPV4POOL_NAT_OUTGOING defaults to true).
- Named ports are Calico named-port IP sets (hash:ip,port) over the rule's selector, all()
  when the rule has none: the same resolution per destination pod felix does, so an egress
  rule to an ipBlock with a named port matches the pods inside the block that have it.
- hostNetwork pods are not workload endpoints: no veth, no chains, in no selector set (only
  ipBlock matches their node addresses).
- felix's per-rule `cali:<hash>` comments are left out; the human comments are kept.
- Host -> local workload traffic is not policed: cali-OUTPUT returns every packet leaving
  by a cali+ interface (`-o cali+ -j RETURN`, static.go filterOutputChain in current felix;
  no `-m ipvs` match there since felix PR #1724). Under IPVS, a host process's packet to a
  Service is policed by the backend's ingress policy: cali-INPUT gives it the non-Calico
  endpoint mark and cali-forward-endpoint-mark runs cali-to-wl-dispatch.
- The cali40this-host set (felix hostip_mgr: the addresses of every interface but the
  workloads' and kube-ipvs0, felix's default InterfaceExclude) holds the node's addresses,
  its tunnel address and loopback's.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.topology import CALICO_IPIP_DEVICE, CALICO_VXLAN_DEVICE, calico_veth_name
from policies.calico import (
    EGRESS,
    INGRESS,
    CalicoPolicies,
    Policy,
    Tier,
    cluster_policies,
    sort_key,
    tier_key,
)
from policies.calico_selector import Expr
from proxy.netfilter import IPSet

from .felix_epmark import endpoint_mark_chains, endpoint_marks
from .felix_ipsets import WorkloadClass, WorkloadIndex, has_veth, ipset_save, net_set
from .felix_policy import (
    PolicyGroup,
    SetNamer,
    dispatch_chains,
    endpoint_chain,
    group_chain,
    group_policies,
    policy_chains,
    profile_chains,
)
from .felix_static import filter_table, mangle_table, nat_table, raw_table
from .felix_text import (
    ALL_HOSTS,
    ALL_POOLS,
    ALL_VXLAN,
    FROM_WORKLOAD,
    FROM_WORKLOAD_DISPATCH,
    MASQ_POOLS,
    THIS_HOST,
    TO_WORKLOAD,
    TO_WORKLOAD_DISPATCH,
    ipset_name,
    length_limited_id,
)

CALICO_VXLAN_V6_DEVICE = "vxlan-v6.calico"


@dataclass(frozen=True, slots=True)
class FelixRules:
    """What felix programs on one node for one address family."""

    node: str
    family: int  # 4 or 6
    restore_text: str  # iptables-restore --noflush payload: raw, mangle, nat, filter
    ipsets: Mapping[str, IPSet]  # the sets the rules refer to, by name

    def ipset_text(self) -> str:
        """The sets as `ipset save` prints them (proxy.netfilter.parse_ipset_save reads it)."""
        return ipset_save(self.ipsets[name] for name in sorted(self.ipsets))


def compile_felix(cluster: Cluster, node: str, family: int = 4,
                  ipvs: bool | None = None) -> FelixRules:
    """felix's rules and IP sets on `node` for IPv4 (4) or IPv6 (6).

    `ipvs`: whether kube-proxy runs in IPVS mode (felix's KubeIPVSSupportEnabled); None
    decides from the cluster (kube-proxy's configured mode; no kube-proxy is not IPVS).
    Raises InputError for an unknown node, an invalid Calico policy or a policy naming a
    tier that does not exist. Cluster-wide work (policy conversion, selector membership) is
    shared between calls for the same cluster object.
    """
    if family not in (4, 6):
        raise ValueError("family must be 4 or 6")
    if cluster.node(node) is None:
        raise InputError(f"no Node named {node!r}")
    if ipvs is None:
        ipvs = kube_proxy_ipvs(cluster, node)
    return _state(cluster).compile(node, family, ipvs)


def compile_felix_all(cluster: Cluster, family: int = 4,
                      ipvs: bool | None = None) -> dict[str, FelixRules]:
    """compile_felix for every node of the cluster."""
    state = _state(cluster)
    return {n.name: state.compile(n.name, family,
                                  kube_proxy_ipvs(cluster, n.name) if ipvs is None else ipvs)
            for n in cluster.nodes}


def kube_proxy_ipvs(cluster: Cluster, node: str) -> bool:
    """Whether kube-proxy on the node runs in IPVS mode (so kube-ipvs0 exists and felix
    turns KubeIPVSSupportEnabled on): its configured mode; False without kube-proxy."""
    from proxy.kube_proxy.options import options_for

    try:
        return options_for(cluster, node).mode == "ipvs"
    except InputError:  # proxy mode none (Cilium's kube-proxy replacement)
        return False


def workload_interface(namespace: str, pod: str) -> str:
    """The host-side interface felix dispatches a pod's traffic on (cali + 11 hex)."""
    return calico_veth_name(namespace, pod)


# ---------------------------------------------------------------- cluster-wide state

_CACHE: list[tuple[Cluster, _State]] = []
_CACHE_SIZE = 2  # clusters are big; a session compiles one or two at a time


def _state(cluster: Cluster) -> _State:
    for known, state in _CACHE:
        if known is cluster:
            return state
    state = _State(cluster)
    _CACHE.insert(0, (cluster, state))
    del _CACHE[_CACHE_SIZE:]
    return state


class _State:
    """What every node's compile shares: policies, workload classes, set memberships."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.model: CalicoPolicies = cluster_policies(cluster)
        self.index = WorkloadIndex(cluster)
        self.namespaced: dict[str, list[Policy]] = defaultdict(list)
        self.cluster_wide: list[Policy] = []
        for p in self.model.policies:
            (self.namespaced[p.namespace] if p.namespace else self.cluster_wide).append(p)
        self._tiers: dict[tuple[int, str], list[tuple[Tier, list[PolicyGroup]]]] = {}
        self._static: dict[int, list[IPSet]] = {}
        settings = cluster.settings
        self.encapsulation = settings.calico_encapsulation
        self.pools = _pools(cluster)

    def tiers_for(self, cls: WorkloadClass, direction: str):
        """The tiers (in order) with the policies (in order, grouped) that apply to the
        endpoints of a class in one direction."""
        key = (id(cls), direction)
        found = self._tiers.get(key)
        if found is None:
            ep = cls.workload
            by_tier: dict[str, list[Policy]] = defaultdict(list)
            for p in (*self.namespaced.get(ep.namespace, ()), *self.cluster_wide):
                if not p.applies(direction):
                    continue
                s = p.selector
                if s.namespace_matches(ep.namespace, ep.namespace_labels) and s.pod_matches(
                        ep, cls.calico_labels if isinstance(s.pods, Expr) else None):
                    by_tier[p.tier].append(p)
            tiers = sorted((self.model.tiers[name] for name in by_tier), key=tier_key)
            found = [(t, group_policies(t.name, direction, sorted(by_tier[t.name],
                                                                  key=sort_key)))
                     for t in tiers]
            self._tiers[key] = found
        return found

    def compile(self, node: str, family: int, ipvs: bool = False) -> FelixRules:
        index = self.index
        used: dict[str, IPSet] = {}
        sets = SetNamer(lambda s: index.selector_set(s, family),
                        lambda s, proto, name: index.named_port_set(s, proto, name, family),
                        used)
        ipip = self.encapsulation.startswith("IPIP") and family == 4
        vxlan = self.encapsulation.startswith("VXLAN")
        filt = filter_table(family, ipip, vxlan, ipvs)
        ifaces: list[str] = []
        profiles: set[tuple[str, bool]] = set()
        active: dict[Policy, None] = {}
        for pod in self.cluster.pods_on(node):
            if not has_veth(pod):
                continue
            cls = index.class_of(pod)
            iface = calico_veth_name(pod.namespace, pod.name)
            ifaces.append(iface)
            endpoint_profiles = [f"kns.{pod.namespace}",
                                 f"ksa.{pod.namespace}.{cls.workload.service_account}"]
            profiles.update({(endpoint_profiles[0], True), (endpoint_profiles[1], False)})
            for direction, prefix in ((INGRESS, TO_WORKLOAD), (EGRESS, FROM_WORKLOAD)):
                tiers = self.tiers_for(cls, direction)
                filt.chain(length_limited_id(prefix, iface),
                           endpoint_chain(tiers, endpoint_profiles, direction))
                for _, groups in tiers:
                    for g in groups:
                        active.update(dict.fromkeys(g.policies))
                        if len(g.policies) > 1:
                            filt.chains[g.chain_name()] = group_chain(g)
        for name, rules in {
                **dispatch_chains(ifaces, FROM_WORKLOAD_DISPATCH, FROM_WORKLOAD, True),
                **dispatch_chains(ifaces, TO_WORKLOAD_DISPATCH, TO_WORKLOAD, False)}.items():
            filt.chains[name] = rules
        if ipvs:
            filt.chains.update(endpoint_mark_chains(endpoint_marks(sorted(ifaces))))
        for profile, allow in sorted(profiles):
            filt.chains.update(profile_chains(profile, allow))
        for policy in active:
            filt.chains.update(policy_chains(policy, family, sets))
        tunnels = self._tunnels(node, family, ipip, vxlan)
        masq = [c for c, nat in self.pools if nat]
        tables = [raw_table(family, vxlan), mangle_table(ipvs),
                  nat_table(family, tunnels, bool(masq)), filt]
        text = "".join(t.render() for t in tables)
        available = dict(used)
        if family not in self._static:
            self._static[family] = self._static_sets(family, masq)
        available.update({s.name: s for s in self._static[family]})
        if ipvs:
            this_host = self._this_host(node, family, tunnels)
            available[this_host.name] = this_host
        referenced = {name: available[name] for name in sorted(available)
                      if f"--match-set {name} " in text}
        return FelixRules(node, family, text, MappingProxyType(referenced))

    def _tunnels(self, node: str, family: int, ipip: bool, vxlan: bool) -> list[str]:
        addresses = self.cluster.addressing.tunnel_ips.get(node, ())
        if isinstance(addresses, str):
            addresses = (addresses,)
        has = any((":" in a) == (family == 6) for a in addresses)
        if not has:
            return []
        if ipip:
            return [CALICO_IPIP_DEVICE]
        if vxlan:
            return [CALICO_VXLAN_DEVICE if family == 4 else CALICO_VXLAN_V6_DEVICE]
        return []

    def _this_host(self, node: str, family: int, tunnels: list[str]) -> IPSet:
        """hostip_mgr's set: the addresses of the node's non-workload interfaces (eth0, the
        tunnel device, lo); hash:ip."""
        addresses = list(self.cluster.node(node).internal_ips)
        if tunnels:
            found = self.cluster.addressing.tunnel_ips.get(node, ())
            addresses += [found] if isinstance(found, str) else list(found)
        addresses.append("127.0.0.1" if family == 4 else "::1")
        members = sorted({a for a in addresses if (":" in a) == (family == 6)},
                         key=ipaddress.ip_address)
        return IPSet(ipset_name(family, THIS_HOST), "hash:ip", tuple(members), family)

    def _static_sets(self, family: int, masq: list[str]) -> list[IPSet]:
        hosts = [ip for n in self.cluster.nodes for ip in n.internal_ips]
        return [net_set(ipset_name(family, ALL_POOLS), [c for c, _ in self.pools], family),
                net_set(ipset_name(family, MASQ_POOLS), masq, family),
                net_set(ipset_name(family, ALL_HOSTS), hosts, family),
                net_set(ipset_name(family, ALL_VXLAN), hosts, family)]


def _pools(cluster: Cluster) -> list[tuple[str, bool]]:
    """(CIDR, natOutgoing) of every IP pool: the IPPool objects, else the pod CIDRs."""
    pools = []
    for obj in cluster.raw("IPPool"):
        spec = obj.body.get("spec") or {}
        cidr = spec.get("cidr")
        try:
            net = str(ipaddress.ip_network(str(cidr), strict=False))
        except ValueError:
            raise InputError(f"must be a CIDR, got {cidr!r}", source=obj.meta.source,
                             obj=f"IPPool {obj.name}", field="spec.cidr") from None
        pools.append((net, bool(spec.get("natOutgoing")) and not spec.get("disabled")))
    return pools or [(c, True) for c in cluster.addressing.pod_cidrs]
