"""Namespace L3 state: `ip route` / `ip neigh` / `bridge fdb` text and longest-prefix lookup."""

from __future__ import annotations

import ipaddress
import random
import time

import pytest

from netsim.netns import (
    Fib,
    Neighbour,
    Route,
    RoutingTable,
    dump_order,
    format_fdb,
    format_neighbour,
    format_route,
    parse_fdb,
    parse_neighbour,
    parse_route,
    parse_routes,
)

# Lines as iproute2 6.1 printed them (trailing space stripped): from cni.md 1.3, from a
# kernel network namespace set up by hand, and from RA-configured IPv6 hosts.
REAL_ROUTES = [
    ("default via 192.168.1.1 dev eth0", None),
    ("10.244.1.65 dev calic440f455693 scope link", None),
    ("blackhole 10.244.1.64/26 proto bird", None),
    ("blackhole 10.244.1.64/26 proto 80", None),
    ("10.244.2.0/26 via 192.168.1.12 dev eth0 proto bird", None),
    ("10.244.2.0/26 via 192.168.1.12 dev tunl0 proto bird onlink", None),
    ("10.244.2.0/26 via 192.168.1.12 dev tunl0 proto 80 onlink", None),
    ("10.244.2.0/26 via 10.244.2.0 dev vxlan.calico proto 80 onlink", None),
    ("192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.11", None),
    ("10.8.0.0/16 via 192.168.1.1 dev eth0 src 192.168.1.11 metric 100 mtu 1450", None),
    ("unreachable 10.9.0.0/16 metric 5", None),
    ("10.244.1.65 dev cali1 scope link linkdown", None),
    ("10.0.1.0/24 via 10.0.0.126 dev cilium_host proto kernel src 10.0.0.126 mtu 1450", None),
    ("local 192.168.1.11 dev eth0 table local proto kernel scope host src 192.168.1.11", None),
    ("broadcast 192.168.1.255 dev eth0 table local proto kernel scope link src 192.168.1.11", None),
    ("fd00::/64 dev eth0 proto kernel metric 256 pref medium", 6),
    ("blackhole fd00:10:244::/122 dev lo proto bird metric 1024 pref medium", 6),
    ("fd00:10:244:1::/122 via fd00::12 dev eth0 proto bird metric 1024 pref medium", 6),
    ("fe80::/64 dev eth0 proto kernel metric 256 pref medium", 6),
    ("default via fe80::ecee:eeff:feee:eeee dev eth0 metric 1024 pref medium", 6),
    ("local fd00:10:244::c1 dev eth0 table local proto kernel metric 0 pref medium", 6),
    ("default via fe80::1 dev eth0 proto ra metric 1024 expires 1797sec pref medium", 6),
    ("unreachable default dev lo proto kernel metric 4294967295 error -101 pref medium", 6),
    ("10.1.0.0/16 via 10.0.0.1 dev eth0 mtu lock 1400 advmss 1360", None),
]


@pytest.mark.parametrize(("line", "family"), REAL_ROUTES)
def test_real_ip_route_lines_round_trip(line, family):
    route = parse_route(line, family)
    assert format_route(route) == line
    assert route.family == (family or 4)


def test_parse_reads_each_field():
    r = parse_route("10.244.2.0/26 via 192.168.1.12 dev tunl0 proto bird onlink ")
    assert (r.dst, r.via, r.dev, r.proto, r.onlink, r.type) == (
        "10.244.2.0/26",
        "192.168.1.12",
        "tunl0",
        "bird",
        True,
        "unicast",
    )
    r = parse_route("blackhole 10.244.1.64/26 proto 80")
    assert (r.type, r.dst, r.proto, r.dev, r.drops) == (
        "blackhole",
        "10.244.1.64/26",
        "80",
        None,
        True,
    )
    r = parse_route("10.244.1.65 dev calic440f455693 scope link")
    assert (r.dst, r.scope, r.metric) == ("10.244.1.65/32", "link", None)
    r = parse_route("10.8.0.0/16 via 192.168.1.1 dev eth0 src 192.168.1.11 metric 100 mtu 1450")
    assert (r.src, r.metric, r.metrics) == ("192.168.1.11", 100, (("mtu", "1450"),))
    assert parse_route("default via fd00::1 dev eth0").dst == "::/0"
    assert parse_route("default dev wg0").dst == "0.0.0.0/0"
    assert parse_route("unreachable default dev lo", family=6).dst == "::/0"
    # `ip route add` spellings parse too; the network is masked as the kernel stores it.
    r = parse_route("to 10.0.0.7/8 via 10.1.1.1 dev eth0 protocol static priority 7")
    assert (r.dst, r.proto, r.metric) == ("10.0.0.0/8", "static", 7)
    assert parse_route("Deleted 10.0.0.0/8 dev eth0").dst == "10.0.0.0/8"


def test_format_puts_fields_in_iproute2_order():
    # print_route: type, dst, via, dev, table, proto, scope, src, metric, flags, metrics, pref.
    r = Route(
        "10.0.0.0/8",
        via="10.1.1.1",
        dev="eth0",
        proto="80",
        scope="link",
        src="10.1.1.5",
        metric=5,
        onlink=True,
        type="unicast",
        table="100",
        flags=("linkdown", "dead"),
        metrics=(("mtu", "1450"),),
    )
    assert format_route(r) == (
        "10.0.0.0/8 via 10.1.1.1 dev eth0 table 100 proto 80 scope link "
        "src 10.1.1.5 metric 5 dead onlink linkdown mtu 1450"
    )
    assert (
        format_route(Route("default", via="192.168.1.1", dev="eth0"))
        == "default via 192.168.1.1 dev eth0"
    )
    assert (
        format_route(Route("10.244.1.65/32", dev="cali0", scope="link"))
        == "10.244.1.65 dev cali0 scope link"
    )
    assert format_route(Route("fd00::5", dev="cali0")) == "fd00::5 dev cali0"
    assert (
        format_route(Route("10.0.0.0/8", dev="eth0", table="main", scope="global"))
        == "10.0.0.0/8 dev eth0"
    )


@pytest.mark.parametrize(
    "line",
    [
        "",
        "bogus 10.0.0.0/8",
        "10.0.0.0/8 via",
        "10.0.0.0/8 dev eth0 metric x",
        "10.0.0.0/8 frobnicate 3",
        "nosuchaddress dev eth0",
        "blackhole",
        "default proto bird nexthop via 10.0.0.1 dev eth0 weight 1",
        "10.0.0.0/8 via inet6 fe80::1 dev eth0",
    ],
)
def test_parse_rejects_what_it_does_not_understand(line):
    with pytest.raises(ValueError):
        parse_route(line)


def test_parse_routes_skips_blanks_and_comments():
    text = "# node1\ndefault via 192.168.1.1 dev eth0 \n\nblackhole 10.244.1.64/26 proto bird\n"
    assert [format_route(r) for r in parse_routes(text)] == [
        "default via 192.168.1.1 dev eth0",
        "blackhole 10.244.1.64/26 proto bird",
    ]


def test_dump_order_is_the_kernels():
    # Both orders as `ip route` / `ip -6 route` printed them after adding in another order.
    v4 = [
        "default via 192.168.1.1 dev eth0",
        "10.0.0.0/24 via 192.168.1.1 dev eth0",
        "10.0.0.0/24 via 192.168.1.2 dev eth0 metric 5",
        "10.0.0.0/16 via 192.168.1.1 dev eth0",
        "10.0.0.0/8 via 192.168.1.1 dev eth0",
        "10.0.0.5 via 192.168.1.1 dev eth0",
        "192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.11",
    ]
    v6 = [
        "fd00::/64 dev eth0 proto kernel metric 256 pref medium",
        "fd00:10:244::/122 via fd00::2 dev eth0 metric 5 pref medium",
        "fd00:10:244::/122 via fd00::1 dev eth0 metric 1024 pref medium",
        "fd00:10:244::41 dev eth0 metric 1024 pref medium",
        "fd00:10:244::40/122 via fd00::1 dev eth0 metric 1024 pref medium",
        "fd00:10:244::/56 via fd00::1 dev eth0 metric 1024 pref medium",
        "fe80::/64 dev eth0 proto kernel metric 256 pref medium",
        "default via fd00::1 dev eth0 metric 1024 pref medium",
    ]
    routes = [parse_route(line) for line in v4 + v6]
    shuffled = routes[:]
    random.Random(7).shuffle(shuffled)
    assert [format_route(r) for r in dump_order(shuffled)] == v4 + v6


# ---------------------------------------------------------------- lookup


NODE1 = parse_routes("""
default via 192.168.1.1 dev eth0
blackhole 10.244.1.64/26 proto bird
10.244.1.65 dev calic440f455693 scope link
10.244.2.0/26 via 192.168.1.12 dev tunl0 proto bird onlink
192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.11
unreachable 10.99.0.0/16
fd00:10:244:1::/122 via fd00::12 dev eth0 proto bird metric 1024 pref medium
blackhole fd00:10:244::/122 dev lo proto bird metric 1024 pref medium
default via fd00::1 dev eth0 metric 1024 pref medium
""")


@pytest.mark.parametrize(
    ("dst", "expected"),
    [
        ("10.244.2.7", "10.244.2.0/26 via 192.168.1.12 dev tunl0 proto bird onlink"),
        ("10.244.1.65", "10.244.1.65 dev calic440f455693 scope link"),
        ("10.244.1.66", "blackhole 10.244.1.64/26 proto bird"),  # unallocated, own block
        ("10.244.1.127", "blackhole 10.244.1.64/26 proto bird"),
        ("10.244.1.128", "default via 192.168.1.1 dev eth0"),
        ("192.168.1.12", "192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.11"),
        ("10.99.3.4", "unreachable 10.99.0.0/16"),
        ("8.8.8.8", "default via 192.168.1.1 dev eth0"),
        (
            "fd00:10:244:1::3",
            "fd00:10:244:1::/122 via fd00::12 dev eth0 proto bird metric 1024 pref medium",
        ),
        ("fd00:10:244::5", "blackhole fd00:10:244::/122 dev lo proto bird metric 1024 pref medium"),
        ("2001:db8::1", "default via fd00::1 dev eth0 metric 1024 pref medium"),
    ],
)
def test_longest_prefix_match(dst, expected):
    table = RoutingTable(NODE1)
    assert format_route(table.lookup(dst)) == expected
    assert format_route(table.lookup(ipaddress.ip_address(dst))) == expected


def test_lookup_misses_and_ties():
    assert RoutingTable(parse_routes("10.0.0.0/8 dev eth0")).lookup("11.0.0.1") is None
    assert RoutingTable().lookup("::1") is None
    tied = parse_routes(
        "10.0.0.0/8 via 10.1.1.1 dev eth0 metric 10\n"
        "10.0.0.0/8 via 10.1.1.2 dev eth0 metric 5\n"
        "10.0.0.0/8 via 10.1.1.3 dev eth0 metric 5"
    )
    assert RoutingTable(tied).lookup("10.2.3.4").via == "10.1.1.2"  # lowest metric, first
    # An IPv6 route without a metric has the kernel's 1024, so metric 256 wins.
    v6 = parse_routes("fd00::/64 via fd00::1 dev eth0\nfd00::/64 dev eth1 metric 256", family=6)
    assert RoutingTable(v6).lookup("fd00::9").dev == "eth1"


def test_fib_tries_local_then_main_and_honours_throw():
    local = RoutingTable(
        parse_routes(
            "local 192.168.1.11 dev eth0 table local proto kernel scope host src 192.168.1.11"
        )
    )
    main = RoutingTable(NODE1)
    fib = Fib((local, main))
    assert fib.lookup("192.168.1.11").type == "local"
    assert fib.lookup("192.168.1.12").dev == "eth0"
    special = RoutingTable(parse_routes("throw 10.244.2.0/24 table 100"))
    fib = Fib((special, main))
    assert fib.lookup("10.244.2.7").dev == "tunl0"  # thrown on to main
    assert Fib((RoutingTable(parse_routes("throw 10.0.0.0/8")),)).lookup("10.1.1.1") is None


def test_lookup_among_5000_blocks_takes_microseconds():
    routes = [Route("0.0.0.0/0", via="172.18.0.1", dev="eth0")]
    base = int(ipaddress.ip_address("10.0.0.0"))
    for i in range(5000):
        routes.append(
            Route(
                f"{ipaddress.ip_address(base + i * 64)}/26",
                via=f"172.18.{i // 250}.{i % 250 + 2}",
                dev="tunl0",
                proto="bird",
                onlink=True,
            )
        )
    routes += [Route(f"10.5.0.{i}", dev=f"cali{i}", scope="link") for i in range(1, 60)]
    table = RoutingTable(routes)
    probes = [
        str(ipaddress.ip_address(base + random.Random(i).randrange(5000 * 64))) for i in range(2000)
    ]
    start = time.perf_counter()
    for probe in probes:
        table.lookup(probe)
    per_lookup = (time.perf_counter() - start) / len(probes)
    assert per_lookup < 50e-6, f"{per_lookup * 1e6:.1f} µs per lookup"
    assert table.lookup("10.0.0.70").dst == "10.0.0.64/26"


# ---------------------------------------------------------------- neighbours and FDB


@pytest.mark.parametrize(
    "line",
    [
        "10.244.2.0 dev vxlan.calico lladdr 66:2d:bf:44:a6:8b PERMANENT",
        "169.254.1.1 dev eth0 lladdr ee:ee:ee:ee:ee:ee REACHABLE",
        "fe80::ecee:eeff:feee:eeee dev eth0 lladdr ee:ee:ee:ee:ee:ee router REACHABLE",
        "192.168.1.1 dev eth0 FAILED",
    ],
)
def test_ip_neigh_lines_round_trip(line):
    assert format_neighbour(parse_neighbour(line)) == line


def test_neighbour_fields_and_errors():
    n = Neighbour("10.244.2.0", "vxlan.calico", "66:2d:bf:44:a6:8b")
    assert format_neighbour(n) == "10.244.2.0 dev vxlan.calico lladdr 66:2d:bf:44:a6:8b PERMANENT"
    for bad in ("10.0.0.1", "10.0.0.1 lladdr aa:bb:cc:dd:ee:ff PERMANENT", "10.0.0.1 dev x y"):
        with pytest.raises(ValueError):
            parse_neighbour(bad)


@pytest.mark.parametrize(
    "line",
    [
        "66:2d:bf:44:a6:8b dev vxlan.calico dst 192.168.1.12 self permanent",
        "00:00:00:00:00:00 dev vxlan0 dst 10.0.0.2 vni 42 self permanent",
        "33:33:00:00:00:01 dev eth0 self permanent",
        "aa:bb:cc:dd:ee:ff dev veth1 vlan 10 master br0 static",
    ],
)
def test_bridge_fdb_lines_round_trip(line):
    assert format_fdb(parse_fdb(line)) == line


def test_fdb_show_dev_output_lacks_the_device():
    # `bridge fdb show dev vxlan.calico` as the kernel printed it.
    e = parse_fdb("66:2d:bf:44:a6:8b dst 192.168.1.12 self permanent", dev="vxlan.calico")
    assert format_fdb(e) == "66:2d:bf:44:a6:8b dev vxlan.calico dst 192.168.1.12 self permanent"
    with pytest.raises(ValueError):
        parse_fdb("66:2d:bf:44:a6:8b dst 192.168.1.12 self permanent")
