"""The dataplane combinations the conformance suites run under: CNI, encapsulation or routing
mode, and the Service proxy (kube-proxy iptables/IPVS, or Cilium's kube-proxy replacement)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from netsim.errors import InputError

CNIS = ("calico", "cilium")
PROXY_MODES = ("iptables", "ipvs", "none")  # none: Cilium's kube-proxy replacement


@dataclass(frozen=True, slots=True)
class Dataplane:
    """One combination, named as the runner prints it (e.g. calico-vxlan/ipvs, cilium-tunnel/kpr).

    `overrides` are the settings load_inputs applies on top of the suite's own cluster.
    """

    name: str
    cni: str
    encapsulation: str  # Calico: IPIP | VXLAN; Cilium: tunnel | native
    proxy_mode: str  # iptables | ipvs | none
    overrides: dict = field(default_factory=dict, compare=False)

    @property
    def proxy_label(self) -> str:
        if self.proxy_mode == "none":
            return "Cilium kube-proxy replacement"
        return f"kube-proxy {self.proxy_mode}"

    def describe(self) -> str:
        return f"{self.cni} {self.encapsulation}, {self.proxy_label}"


def _calico(encapsulation: str, proxy: str) -> Dataplane:
    return Dataplane(f"calico-{encapsulation.lower()}/{proxy}", "calico", encapsulation, proxy,
                     {"cni": "calico", "calico_encapsulation": encapsulation,
                      "proxy_mode": proxy})


def _cilium(routing: str, proxy: str) -> Dataplane:
    label = "kpr" if proxy == "none" else proxy
    return Dataplane(f"cilium-{routing}/{label}", "cilium", routing, proxy,
                     {"cni": "cilium", "cilium_routing_mode": routing, "proxy_mode": proxy})


# Every combination netsim emulates, in the order the runner reports them. Calico runs with
# kube-proxy (its eBPF dataplane is not emulated); Cilium with its kube-proxy replacement or
# beside kube-proxy in iptables mode.
DATAPLANES: tuple[Dataplane, ...] = (
    _calico("IPIP", "iptables"), _calico("IPIP", "ipvs"),
    _calico("VXLAN", "iptables"), _calico("VXLAN", "ipvs"),
    _cilium("tunnel", "none"), _cilium("tunnel", "iptables"),
    _cilium("native", "none"), _cilium("native", "iptables"),
)
# The combinations every trace suite runs under unless it names others (the services suite
# adds Calico VXLAN and Cilium native routing).
CORE = ("calico-ipip/iptables", "calico-ipip/ipvs", "cilium-tunnel/kpr",
        "cilium-tunnel/iptables")
BY_NAME = {d.name: d for d in DATAPLANES}


def select(names: tuple[str, ...], cni: str = "all", proxy_mode: str = "all",
           only: tuple[str, ...] = ()) -> tuple[Dataplane, ...]:
    """The suite's dataplanes (by name) that pass the command line's filters."""
    out = []
    for name in names:
        d = BY_NAME[name]
        if cni not in ("all", d.cni) or proxy_mode not in ("all", d.proxy_mode):
            continue
        if only and d.name not in only:
            continue
        out.append(d)
    return tuple(out)


def check_filters(cni: str, proxy_mode: str, only: tuple[str, ...]) -> None:
    """Refuse filters no combination satisfies, naming what exists."""
    unknown = [n for n in only if n not in BY_NAME]
    if unknown:
        raise InputError(f"no dataplane {unknown[0]!r} (one of {', '.join(BY_NAME)})",
                         obj="command line", field="--dataplane")
    if not any(cni in ("all", d.cni) and proxy_mode in ("all", d.proxy_mode)
               and (not only or d.name in only) for d in DATAPLANES):
        why = ("Calico runs with kube-proxy (iptables or ipvs); --proxy-mode none is "
               "Cilium's kube-proxy replacement" if cni == "calico" else
               "Cilium runs with its kube-proxy replacement (none) or beside kube-proxy "
               "iptables" if cni == "cilium" else "no combination matches")
        raise InputError(f"no dataplane is --cni {cni} --proxy-mode {proxy_mode}: {why}",
                         obj="command line", field="--proxy-mode")


def matches(d: Dataplane, when: dict[str, tuple[str, ...]]) -> bool:
    """Whether a `when:` selector of a suite file covers a combination: every key given must
    match (dataplane: names or globs; cni; proxy: iptables|ipvs|none; encapsulation)."""
    values = {"dataplane": d.name, "cni": d.cni, "proxy": d.proxy_mode,
              "encapsulation": d.encapsulation}
    for key, allowed in when.items():
        value = values[key]
        if key == "dataplane":
            if not any(fnmatch.fnmatchcase(value, pattern) for pattern in allowed):
                return False
        elif value.lower() not in {a.lower() for a in allowed}:
            return False
    return True


WHEN_KEYS = ("dataplane", "cni", "proxy", "encapsulation")


def known_values(key: str) -> tuple[str, ...]:
    """The values a `when:` key can take, for error messages."""
    attr = {"dataplane": "name", "cni": "cni", "proxy": "proxy_mode",
            "encapsulation": "encapsulation"}[key]
    return tuple(dict.fromkeys(getattr(d, attr) for d in DATAPLANES))


def selects_any(key: str, value: str) -> bool:
    """Whether one value of a `when:` key covers at least one combination (catches typos)."""
    return any(matches(d, {key: (value,)}) for d in DATAPLANES)
