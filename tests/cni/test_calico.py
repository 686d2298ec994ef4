"""What Calico programs on nodes and in pods: expectations from cni.md 1.2-1.3 and the kernel.

The cni.md example cluster (node1 192.168.1.11, node2 192.168.1.12 in 192.168.1.0/24, blocks
10.244.1.64/26 and 10.244.2.0/26, pod default/nginx 10.244.1.65) is built from manifests here,
so the reference's `ip route` lines are the expected output, word for word.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from cni.calico import node_namespace, node_namespaces, pod_namespace
from netsim.cluster import Cluster, load
from netsim.errors import InputError
from netsim.netns import Namespace, format_fdb, format_neighbour, format_route
from tests.helpers import load_yaml

ROOT = Path(__file__).resolve().parents[2]
SHOP = str(ROOT / "examples" / "shop")
NGINX_MAC = "0a:58:0a:f4:01:41"


def _node(
    name: str, ip: str, prefix: int, tunnel: str, ip6: str | None = None, tunnel6: str | None = None
) -> str:
    annotations = {
        "projectcalico.org/IPv4Address": f"{ip}/{prefix}",
        "projectcalico.org/IPv4VXLANTunnelAddr": tunnel,
    }
    addresses = [ip]
    if ip6:
        annotations["projectcalico.org/IPv6Address"] = f"{ip6}/64"
        annotations["projectcalico.org/IPv6VXLANTunnelAddr"] = tunnel6
        addresses.append(ip6)
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Node
        metadata:
          name: {name}
          annotations: {{{", ".join(f'"{k}": "{v}"' for k, v in annotations.items())}}}
        status:
          addresses: [{", ".join(f'{{type: InternalIP, address: "{a}"}}' for a in addresses)}]
        ---
        """)


def _pod(name: str, node: str, *ips: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: default{extra}}}
        spec: {{nodeName: {node}, containers: [{{name: c, image: nginx}}]}}
        status:
          podIP: "{ips[0]}"
          podIPs: [{", ".join(f'{{ip: "{ip}"}}' for ip in ips)}]
        ---
        """)


def cnimd_yaml(encapsulation: str, *, third_node: bool = False, dual_stack: bool = False) -> str:
    """The cni.md 1.3 / 3.2 example as manifests: two nodes in one /24 (and, for CrossSubnet,
    a third in another)."""
    cidrs = '[10.244.0.0/16, "fd00:10:244::/56"]' if dual_stack else "[10.244.0.0/16]"
    text = textwrap.dedent(f"""\
        apiVersion: netsim/v1alpha1
        kind: NetsimConfig
        metadata: {{name: netsim}}
        spec:
          cni: {{name: calico, calico: {{encapsulation: {encapsulation}}}}}
          podCIDRs: {cidrs}
          dns: {{disabled: true}}  # the reference cluster has no cluster DNS
        ---
        """)
    six = {"node1": ("fc00::11", "fd00:10:244:1::40"), "node2": ("fc00::12", "fd00:10:244:2::")}
    text += _node("node1", "192.168.1.11", 24, "10.244.1.64", *(six["node1"] if dual_stack else ()))
    text += _node("node2", "192.168.1.12", 24, "10.244.2.0", *(six["node2"] if dual_stack else ()))
    nginx = ("10.244.1.65", "fd00:10:244:1::41") if dual_stack else ("10.244.1.65",)
    web = ("10.244.2.7", "fd00:10:244:2::7") if dual_stack else ("10.244.2.7",)
    text += _pod(
        "nginx",
        "node1",
        *nginx,
        extra=f', annotations: {{"cni.projectcalico.org/hwAddr": "{NGINX_MAC}"}}',
    )
    text += _pod("web", "node2", *web)
    if third_node:
        text += _node("node3", "192.168.2.13", 24, "10.244.3.0")
        text += _pod("db", "node3", "10.244.3.5")
    return text


def cnimd_cluster(
    encapsulation: str, *, third_node: bool = False, dual_stack: bool = False
) -> Cluster:
    return load_yaml(
        cnimd_yaml(encapsulation, third_node=third_node, dual_stack=dual_stack))


def route_lines(ns: Namespace, family: int = 4) -> list[str]:
    return [format_route(r) for r in ns.routes if r.family == family]


def assert_lines(got: list[str], expected: list[str], labels=("netsim", "expected")) -> None:
    if got != expected:
        import difflib

        diff = "\n".join(difflib.unified_diff(expected, got, labels[1], labels[0], lineterm=""))
        pytest.fail(f"route lines differ:\n{diff}")


# ---------------------------------------------------------------- cni.md 1.3, word for word

CONNECTED = "192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.11"


@pytest.mark.parametrize(
    ("encapsulation", "block_proto", "remote"),
    [
        ("None", "bird", "10.244.2.0/26 via 192.168.1.12 dev eth0 proto bird"),
        ("IPIP", "bird", "10.244.2.0/26 via 192.168.1.12 dev tunl0 proto bird onlink"),
        ("VXLAN", "80", "10.244.2.0/26 via 10.244.2.0 dev vxlan.calico proto 80 onlink"),
    ],
)
def test_node_routes_match_the_reference(encapsulation, block_proto, remote):
    ns = node_namespace(cnimd_cluster(encapsulation), "node1")
    assert_lines(
        route_lines(ns),
        [
            "default via 192.168.1.1 dev eth0",
            f"blackhole 10.244.1.64/26 proto {block_proto}",
            "10.244.1.65 dev calic440f455693 scope link",
            remote,
            CONNECTED,
        ],
    )
    assert ns.name == "host:node1" and ns.node == "node1"
    assert route_lines(ns, 6) == []


def test_vxlan_neighbour_and_fdb_per_remote_vtep():
    ns = node_namespace(cnimd_cluster("VXLAN"), "node1")
    # cni.md 1.3: the VTEP MAC for node2 is 66:2d:bf:44:a6:8b.
    assert [format_neighbour(n) for n in ns.neighbours] == [
        f"10.244.1.65 dev calic440f455693 lladdr {NGINX_MAC} PERMANENT",  # Felix's static ARP
        "10.244.2.0 dev vxlan.calico lladdr 66:2d:bf:44:a6:8b PERMANENT",
    ]
    assert [format_fdb(e) for e in ns.fdb] == [
        "66:2d:bf:44:a6:8b dev vxlan.calico dst 192.168.1.12 self permanent"
    ]
    vxlan = ns.interface("vxlan.calico")
    assert (vxlan.kind, vxlan.addresses, vxlan.vni, vxlan.port, vxlan.local, vxlan.mtu) == (
        "vxlan",
        ("10.244.1.64/32",),
        4096,
        4789,
        "192.168.1.11",
        1450,
    )
    other = node_namespace(cnimd_cluster("VXLAN"), "node2")
    assert other.interface("vxlan.calico").mac == "66:2d:bf:44:a6:8b"


def test_vtep_mac_annotation_wins():
    cluster = cnimd_cluster("VXLAN")
    text = _node("node2", "192.168.1.12", 24, "10.244.2.0").replace(
        '"projectcalico.org/IPv4Address"',
        '"projectcalico.org/VXLANTunnelMACAddr": "66:00:00:00:00:02", '
        '"projectcalico.org/IPv4Address"',
    )
    cluster = load_yaml(
        text
        + _node("node1", "192.168.1.11", 24, "10.244.1.64")
        + "apiVersion: netsim/v1alpha1\nkind: NetsimConfig\nmetadata: "
        "{name: n}\nspec: {cni: {calico: {encapsulation: VXLAN}}}\n"
    )
    ns = node_namespace(cluster, "node1")
    assert [format_fdb(e) for e in ns.fdb] == [
        "66:00:00:00:00:02 dev vxlan.calico dst 192.168.1.12 self permanent"
    ]


def test_devices_and_mtus():
    ipip = node_namespace(cnimd_cluster("IPIP"), "node1")
    assert [i.name for i in ipip.interfaces] == ["lo", "eth0", "tunl0", "calic440f455693"]
    tunl0 = ipip.interface("tunl0")
    assert (tunl0.kind, tunl0.addresses, tunl0.mtu) == ("ipip", ("10.244.1.64/32",), 1480)
    veth = ipip.interface("calic440f455693")
    assert (veth.mac, veth.peer, veth.proxy_arp, veth.mtu) == (
        "ee:ee:ee:ee:ee:ee",
        ("pod:default/nginx", "eth0"),
        True,
        1480,
    )
    assert ipip.interface("eth0").addresses == ("192.168.1.11/24",)
    bgp = node_namespace(cnimd_cluster("None"), "node1")
    assert [i.name for i in bgp.interfaces] == ["lo", "eth0", "calic440f455693"]
    assert bgp.interface("calic440f455693").mtu == 1500


# ---------------------------------------------------------------- CrossSubnet


@pytest.mark.parametrize(
    ("encapsulation", "same", "other"),
    [
        (
            "IPIPCrossSubnet",
            "10.244.2.0/26 via 192.168.1.12 dev eth0 proto bird",
            "10.244.3.0/26 via 192.168.2.13 dev tunl0 proto bird onlink",
        ),
        (
            "VXLANCrossSubnet",
            "10.244.2.0/26 via 192.168.1.12 dev eth0 proto 80",
            "10.244.3.0/26 via 10.244.3.0 dev vxlan.calico proto 80 onlink",
        ),
        (
            "IPIP",
            "10.244.2.0/26 via 192.168.1.12 dev tunl0 proto bird onlink",
            "10.244.3.0/26 via 192.168.2.13 dev tunl0 proto bird onlink",
        ),
        (
            "VXLAN",
            "10.244.2.0/26 via 10.244.2.0 dev vxlan.calico proto 80 onlink",
            "10.244.3.0/26 via 10.244.3.0 dev vxlan.calico proto 80 onlink",
        ),
        # No encapsulation to a peer off the subnet: BIRD's `gateway recursive` resolves the
        # next hop through the default route (netsim's reading; cni.md is silent on it).
        (
            "None",
            "10.244.2.0/26 via 192.168.1.12 dev eth0 proto bird",
            "10.244.3.0/26 via 192.168.1.1 dev eth0 proto bird",
        ),
    ],
)
def test_cross_subnet_encapsulates_only_off_subnet_peers(encapsulation, same, other):
    ns = node_namespace(cnimd_cluster(encapsulation, third_node=True), "node1")
    lines = route_lines(ns)
    assert same in lines and other in lines


def test_cross_subnet_vxlan_keeps_every_vtep():
    ns = node_namespace(cnimd_cluster("VXLANCrossSubnet", third_node=True), "node1")
    assert [format_fdb(e) for e in ns.fdb] == [
        "66:2d:bf:44:a6:8b dev vxlan.calico dst 192.168.1.12 self permanent",
        f"{_sha1_mac('node3')} dev vxlan.calico dst 192.168.2.13 self permanent",
    ]


def _sha1_mac(name: str) -> str:
    """cni.md 1.3: 0x66 then the first 5 bytes of SHA-1(node name)."""
    import hashlib

    return ":".join(f"{b:02x}" for b in b"\x66" + hashlib.sha1(name.encode()).digest()[:5])


# ---------------------------------------------------------------- the shop, from its addressing


def test_shop_worker_routes_follow_the_address_plan():
    cluster = load([SHOP])  # IPIP, kind-style nodes in 172.18.0.0/16
    plan = cluster.addressing
    me = "shop-worker"
    node_ip = cluster.node(me).ip()
    subnet = ipaddress.ip_network(plan.node_cidrs[0])
    expected = [
        f"default via {subnet.network_address + 1} dev eth0",
        f"{subnet} dev eth0 proto kernel scope link src {node_ip}",
    ]
    for block, owner in plan.blocks.items():
        if owner == me:
            expected.append(f"blackhole {block} proto bird")
        else:
            expected.append(f"{block} via {cluster.node(owner).ip()} dev tunl0 proto bird onlink")
    from netsim.topology import calico_veth_name

    for pod in cluster.pods_on(me):
        expected.append(f"{pod.ip} dev {calico_veth_name(pod.namespace, pod.name)} scope link")

    def kernel_order(line: str) -> tuple[int, int]:
        word = line.split()[1] if line.startswith("blackhole") else line.split()[0]
        net = ipaddress.ip_network("0.0.0.0/0" if word == "default" else word)
        return int(net.network_address), -net.prefixlen

    ns = node_namespace(cluster, me)
    assert_lines(route_lines(ns), sorted(expected, key=kernel_order))
    assert ns.interface("tunl0").addresses == (f"{plan.tunnel_ips[me][0]}/32",)
    assert node_namespaces(cluster)[me] == ns


def test_lookups_on_the_shop_worker():
    cluster = load([SHOP])
    ns = node_namespace(cluster, "shop-worker")
    fib = ns.fib()
    own = next(b for b, n in cluster.addressing.blocks.items() if n == "shop-worker")
    remote_pod = next(p for p in cluster.pods if p.node_name == "shop-worker2")
    local_pod = next(p for p in cluster.pods if p.node_name == "shop-worker")
    worker2 = cluster.node("shop-worker2").ip()

    r = fib.lookup(remote_pod.ip)  # another node's block: the tunnel route
    assert (r.dev, r.via, r.onlink) == ("tunl0", worker2, True)
    used = {p.ip for p in cluster.pods}
    free = next(
        str(a)
        for a in ipaddress.ip_network(own).hosts()
        if str(a) not in used and str(a) not in cluster.addressing.tunnel_ips["shop-worker"]
    )
    assert fib.lookup(free).type == "blackhole"  # unallocated in its own block: dropped
    assert fib.lookup(local_pod.ip).dev.startswith("cali")
    assert fib.lookup(worker2).dst == cluster.addressing.node_cidrs[0]
    assert fib.lookup("1.1.1.1").via == "172.18.0.1"
    assert fib.lookup(cluster.node("shop-worker").ip()).type == "local"
    assert fib.lookup("127.0.0.53").type == "local"


# ---------------------------------------------------------------- pods


def test_pod_namespace_as_the_cni_plugin_leaves_it():
    cluster = cnimd_cluster("IPIP")
    ns = pod_namespace(cluster, cluster.pod("default", "nginx"))
    assert route_lines(ns) == [
        "default via 169.254.1.1 dev eth0",
        "169.254.1.1 dev eth0 scope link",
    ]
    assert [format_neighbour(n) for n in ns.neighbours] == [
        "169.254.1.1 dev eth0 lladdr ee:ee:ee:ee:ee:ee REACHABLE"
    ]
    eth0 = ns.interface("eth0")
    assert (eth0.addresses, eth0.mac, eth0.peer, eth0.mtu) == (
        ("10.244.1.65/32",),
        NGINX_MAC,
        ("host:node1", "calic440f455693"),
        1480,
    )
    assert (ns.name, ns.node, ns.fdb) == ("pod:default/nginx", "node1", ())
    fib = ns.fib()
    assert format_route(fib.lookup("10.244.2.7")) == "default via 169.254.1.1 dev eth0"
    assert format_route(fib.lookup("169.254.1.1")) == "169.254.1.1 dev eth0 scope link"
    assert fib.lookup("10.244.1.65").type == "local"


def test_host_network_pod_uses_the_node_namespace():
    cluster = load_yaml(
        _node("node1", "192.168.1.11", 24, "10.244.1.64")
        + textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: agent, namespace: kube-system}
        spec: {nodeName: node1, hostNetwork: true, containers: [{name: c, image: agent}]}
        """)
    )
    pod = cluster.pod("kube-system", "agent")
    assert pod_namespace(cluster, pod) == node_namespace(cluster, "node1")


def test_pods_without_a_namespace_are_errors():
    cluster = load_yaml(
        _node("node1", "192.168.1.11", 24, "10.244.1.64")
        + textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: lost, namespace: default}
        spec:
          nodeSelector: {disk: ssd}
          containers: [{name: c, image: x}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: done, namespace: default}
        spec: {nodeName: node1, containers: [{name: c, image: x}]}
        status: {phase: Succeeded, podIP: 10.244.1.70}
        """)
    )
    with pytest.raises(InputError, match="not scheduled"):
        pod_namespace(cluster, cluster.pod("default", "lost"))
    with pytest.raises(InputError, match="is Succeeded"):
        pod_namespace(cluster, cluster.pod("default", "done"))
    # A finished pod's sandbox is gone: no route to its old address.
    lines = route_lines(node_namespace(cluster, "node1"))
    assert not any(line.startswith("10.244.1.70 ") for line in lines)


def test_unknown_node_and_other_cnis_are_errors():
    with pytest.raises(InputError, match="no Node named 'nope'"):
        node_namespace(cnimd_cluster("IPIP"), "nope")
    cilium = load([SHOP], overrides={"cni": "cilium"})
    with pytest.raises(InputError, match="not calico"):
        node_namespace(cilium, "shop-worker")


def test_borrowed_address_gets_a_host_route_to_its_node():
    # Block 10.244.1.64/26 belongs to node1 (its pod comes first); node2's pod borrowed .70.
    text = (
        _node("node1", "192.168.1.11", 24, "10.244.1.64")
        + _node("node2", "192.168.1.12", 24, "10.244.2.0")
        + _pod("a", "node1", "10.244.1.65")
        + _pod("b", "node2", "10.244.1.70")
    )
    cluster = load_yaml(text)  # IPIP by default
    node1 = node_namespace(cluster, "node1")
    assert "10.244.1.70 via 192.168.1.12 dev tunl0 proto bird onlink" in route_lines(node1)
    assert node1.fib().lookup("10.244.1.70").via == "192.168.1.12"
    assert node1.fib().lookup("10.244.1.71").type == "blackhole"
    node2 = node_namespace(cluster, "node2")
    assert node2.fib().lookup("10.244.1.70").dev.startswith("cali")


# ---------------------------------------------------------------- dual stack


def test_dual_stack_vxlan_uses_vxlan_v6_calico():
    ns = node_namespace(cnimd_cluster("VXLAN", dual_stack=True), "node1")
    v6 = [line for line in route_lines(ns, 6) if not line.startswith("fe80::/64")]
    assert_lines(
        v6,
        [
            "fc00::/64 dev eth0 proto kernel metric 256 pref medium",
            # The kernel adds a prefix route even for a /128 address (the VTEP's).
            "fd00:10:244:1::40 dev vxlan-v6.calico proto kernel metric 256 pref medium",
            "fd00:10:244:1::41 dev calic440f455693 metric 1024 pref medium",
            "blackhole fd00:10:244:1::40/122 dev lo proto 80 metric 1024 pref medium",
            "fd00:10:244:2::/122 via fd00:10:244:2:: dev vxlan-v6.calico proto 80 metric 1024 "
            "onlink pref medium",
            "default via fc00::1 dev eth0 metric 1024 pref medium",
        ],
    )
    v6mac = _sha1_mac("node2-v6")  # felix vxlan_resolver.go: SHA-1 of "<node>-v6"
    assert f"fd00:10:244:2:: dev vxlan-v6.calico lladdr {v6mac} PERMANENT" in [
        format_neighbour(n) for n in ns.neighbours
    ]
    assert f"{v6mac} dev vxlan-v6.calico dst fc00::12 self permanent" in [
        format_fdb(e) for e in ns.fdb
    ]
    dev = ns.interface("vxlan-v6.calico")
    assert (dev.addresses, dev.local, dev.mtu) == (("fd00:10:244:1::40/128",), "fc00::11", 1430)
    assert ns.interface("calic440f455693").mtu == 1430  # the smallest tunnel MTU in use


def test_dual_stack_ipip_routes_ipv6_without_encapsulation():
    ns = node_namespace(cnimd_cluster("IPIP", dual_stack=True), "node1")
    assert (
        "fd00:10:244:2::/122 via fc00::12 dev eth0 proto bird metric 1024 pref medium"
        in route_lines(ns, 6)
    )
    assert ns.interface("tunl0").addresses == ("10.244.1.64/32",)  # IPIP is IPv4-only
    assert ns.interface("vxlan-v6.calico") is None


def test_dual_stack_pod():
    cluster = cnimd_cluster("VXLAN", dual_stack=True)
    ns = pod_namespace(cluster, cluster.pod("default", "nginx"))
    assert route_lines(ns, 6) == [
        "fd00:10:244:1::41 dev eth0 proto kernel metric 256 pref medium",
        "fe80::/64 dev eth0 proto kernel metric 256 pref medium",
        "default via fe80::ecee:eeff:feee:eeee dev eth0 metric 1024 pref medium",
    ]
    assert ns.fib().lookup("fd00:10:244:2::7").via == "fe80::ecee:eeff:feee:eeee"


# ---------------------------------------------------------------- the kernel as referee


def _kernel_skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None or shutil.which("bridge") is None:
        return "iproute2 is not installed"
    name = f"nsr-probe-{os.getpid()}"
    probe = subprocess.run(
        ["ip", "netns", "add", name], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    try:
        vx = subprocess.run(
            ["ip", "-n", name, "link", "add", "vx0", "type", "vxlan", "id", "1", "dstport", "4789"],
            capture_output=True,
            text=True,
            check=False,
        )
        if vx.returncode != 0:
            return f"no vxlan devices: {vx.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    return None


KERNEL_SKIP = _kernel_skip()


def _run(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


def realize(ns: Namespace, name: str) -> dict[str, list[str]]:
    """Build the namespace for real (veth peers parked in a second namespace) and read back
    what `ip route`, `ip -6 route`, `ip neigh` and `bridge fdb` print."""
    peer = f"{name}-peer"
    try:
        _run("ip", "netns", "add", name)
        _run("ip", "netns", "add", peer)
        ip = ("ip", "-n", name)
        if not any(r.family == 6 for r in ns.routes):  # a node without IPv6, as modelled
            _run(
                "ip",
                "netns",
                "exec",
                name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            )
        for n, iface in enumerate(ns.interfaces):
            if iface.kind in ("ethernet", "veth"):
                _run(
                    *ip,
                    "link",
                    "add",
                    iface.name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    f"p{n}",
                    "netns",
                    peer,
                )
                _run("ip", "-n", peer, "link", "set", f"p{n}", "up")
            elif iface.kind == "vxlan":
                _run(
                    *ip,
                    "link",
                    "add",
                    iface.name,
                    "type",
                    "vxlan",
                    "id",
                    str(iface.vni),
                    "dstport",
                    str(iface.port),
                    "local",
                    iface.local,
                    "dev",
                    iface.link,
                )
            elif iface.kind != "loopback":
                pytest.skip(f"{iface.kind} devices are not realized here")
            if iface.mac:
                _run(*ip, "link", "set", iface.name, "address", iface.mac)
            if iface.kind != "loopback":
                _run(*ip, "link", "set", iface.name, "mtu", str(iface.mtu))
                for cidr in iface.addresses:
                    _run(
                        *ip,
                        "addr",
                        "add",
                        cidr,
                        "dev",
                        iface.name,
                        *(("nodad",) if ":" in cidr else ()),
                    )
            _run(*ip, "link", "set", iface.name, "up")
        for route in ns.routes:
            if route.proto != "kernel":  # those come with the addresses
                _run(*ip, "route", "add", *format_route(route).split())
        for n in ns.neighbours:
            _run(
                *ip, "neigh", "add", n.ip, "dev", n.dev, "lladdr", n.lladdr, "nud", n.state.lower()
            )
        for e in ns.fdb:
            _run("ip", "netns", "exec", name, "bridge", "fdb", "add", *format_fdb(e).split())
        lines = {
            "v4": _run(*ip, "-4", "route").splitlines(),
            "v6": _run(*ip, "-6", "route").splitlines(),
            "neigh": _run(*ip, "neigh", "show", "nud", "permanent").splitlines(),
            "fdb": [
                line
                for line in _run("ip", "netns", "exec", name, "bridge", "fdb", "show").splitlines()
                if " dst " in line
            ],
        }
        return {k: [line.rstrip() for line in v] for k, v in lines.items()}
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "netns", "del", peer], check=False)


@pytest.mark.kernel
@pytest.mark.skipif(KERNEL_SKIP is not None, reason=KERNEL_SKIP or "")
@pytest.mark.parametrize(
    ("encapsulation", "dual_stack", "third_node"),
    [
        ("None", False, True),
        ("VXLAN", False, False),
        ("VXLANCrossSubnet", True, True),
    ],
)
def test_the_kernel_prints_our_node_as_we_do(encapsulation, dual_stack, third_node):
    cluster = cnimd_cluster(encapsulation, dual_stack=dual_stack, third_node=third_node)
    ns = node_namespace(cluster, "node1")
    real = realize(ns, f"nsr-{os.getpid()}-{encapsulation.lower()}")
    kernel = ("kernel", "netsim")
    assert_lines(real["v4"], route_lines(ns), kernel)
    # The kernel's order among equal fe80::/64 routes follows device history; compare the
    # rest in order and those as a set.
    ours6 = route_lines(ns, 6)
    assert_lines(
        [x for x in real["v6"] if not x.startswith("fe80::/64")],
        [x for x in ours6 if not x.startswith("fe80::/64")],
        kernel,
    )
    assert sorted(x for x in real["v6"] if x.startswith("fe80::/64")) == sorted(
        x for x in ours6 if x.startswith("fe80::/64")
    )
    assert sorted(real["neigh"]) == sorted(format_neighbour(n) for n in ns.neighbours)
    assert sorted(real["fdb"]) == sorted(format_fdb(e) for e in ns.fdb)


@pytest.mark.kernel
@pytest.mark.skipif(KERNEL_SKIP is not None, reason=KERNEL_SKIP or "")
def test_the_kernel_answers_the_pod_gateway_with_ee_by_proxy_arp():
    """Pod and node for real: the pod's ARP for 169.254.1.1 is answered by the host veth's
    proxy ARP with ee:ee:ee:ee:ee:ee, the neighbour entry netsim puts in the pod."""
    cluster = cnimd_cluster("None")
    node, pod = (
        node_namespace(cluster, "node1"),
        pod_namespace(cluster, cluster.pod("default", "nginx")),
    )
    base = f"nsr-{os.getpid()}-arp"
    names = {"node": base, "pod": f"{base}-pod", "up": f"{base}-up"}
    try:
        for name in names.values():
            _run("ip", "netns", "add", name)
        veth = "calic440f455693"
        _run(
            "ip",
            "-n",
            names["node"],
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            names["up"],
        )
        _run(
            "ip",
            "-n",
            names["node"],
            "link",
            "add",
            veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            names["pod"],
        )
        _run("ip", "-n", names["node"], "link", "set", veth, "address", node.interface(veth).mac)
        _run(
            "ip",
            "netns",
            "exec",
            names["node"],
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            f"net.ipv4.conf.{veth}.proxy_arp=1",
            f"net.ipv4.neigh.{veth}.proxy_delay=0",
        )
        for ns_name, dev in (
            (names["node"], "eth0"),
            (names["node"], veth),
            (names["up"], "up0"),
            (names["pod"], "eth0"),
            (names["pod"], "lo"),
        ):
            _run("ip", "-n", ns_name, "link", "set", dev, "up")
        _run("ip", "-n", names["node"], "addr", "add", "192.168.1.11/24", "dev", "eth0")
        for route in node.routes:
            if route.proto != "kernel" and route.dev in ("eth0", veth, None):
                _run("ip", "-n", names["node"], "route", "add", *format_route(route).split())
        _run("ip", "-n", names["pod"], "addr", "add", "10.244.1.65/32", "dev", "eth0")
        for route in sorted(pod.routes, key=lambda r: r.via is not None):  # gateway first
            _run("ip", "-n", names["pod"], "route", "add", *format_route(route).split())
        assert _run("ip", "-n", names["pod"], "route").splitlines() == [
            f"{line} " for line in route_lines(pod)
        ]
        # Any packet off the pod's /32 makes it resolve its gateway.
        _run(
            "ip",
            "netns",
            "exec",
            names["pod"],
            "python3",
            "-c",
            "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.sendto(b'x', ('10.244.2.7', 9)); time.sleep(0.3)",
        )
        neigh = [line.rstrip() for line in _run("ip", "-n", names["pod"], "neigh").splitlines()]
        assert neigh == [format_neighbour(n) for n in pod.neighbours]
    finally:
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], check=False)
