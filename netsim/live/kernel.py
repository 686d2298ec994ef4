"""The kernel side of live mode: network namespaces, sysctls, IP sets, nfacct counters,
conntrack and iptables-restore, each done in the namespace it belongs to.

pyroute2 does what it can (namespaces, links, routes, neighbours, FDB, IP sets, conntrack);
iptables-restore, which pyroute2 cannot replace, runs under `ip netns exec`. A thread enters a
namespace with setns(2), which moves only the calling thread: sockets it opens there stay in
that namespace after it leaves (how one process listens and probes in every namespace).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterable, Iterator

from pyroute2 import netns as pyroute2_netns

from netsim.live.state import LiveError
from proxy.netfilter import IPSet
from proxy.netfilter.ipset import PORT_PROTOCOLS, SET_TYPES

NETNS_DIR = pyroute2_netns.NETNS_RUN_DIR  # where pyroute2 (and `ip netns`) mount them
TOOLS = ("ip", "iptables-restore")
RESTORE = {4: "iptables-restore", 6: "ip6tables-restore"}
# What `iptables-restore` without --noflush is given to empty every table of a namespace
# (flush each chain and delete the user-defined ones) before the next rules are loaded.
EMPTY_TABLES = "".join(f"*{t}\nCOMMIT\n" for t in ("raw", "mangle", "nat", "filter"))
# felix writes its sets as `ipset restore` does: `hashsize 1024 maxelem 1048576`.
IPSET_HASHSIZE, IPSET_MAXELEM = 1024, 1048576


def require_root() -> None:
    if os.geteuid() != 0:
        raise LiveError("live mode needs root (it creates network namespaces and loads "
                        "iptables rules): run it as root, e.g. with sudo")


def require_tools(families: Iterable[int] = (4,)) -> None:
    for tool in (*TOOLS, *(RESTORE[f] for f in families)):
        if shutil.which(tool) is None:
            raise LiveError(f"live mode needs {tool} (packages iproute2 and iptables)")


# ---------------------------------------------------------------- namespaces


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def create_netns(name: str) -> None:
    """A new named namespace (as `ip netns add`); refuses a name already taken."""
    if netns_exists(name):
        raise LiveError(f"a network namespace named {name} already exists and netsim did not "
                        "record it: remove it (ip netns del) or use another --prefix")
    pyroute2_netns.create(name)


def remove_netns(name: str) -> bool:
    """Unmount and unlink the namespace; True when it existed. The kernel frees it (and its
    devices: veth peers vanish with it) once no process or socket holds it."""
    if not netns_exists(name):
        return False
    with contextlib.suppress(FileNotFoundError):
        pyroute2_netns.remove(name)
    return True


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the calling thread inside namespace `name` and bring it back afterwards."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(name), os.O_RDONLY)
    except FileNotFoundError:
        os.close(home)
        raise LiveError(f"network namespace {name} is gone (was `netsim live down` run, or "
                        "was it deleted by hand?)") from None
    try:
        pyroute2_netns.setns(target, flags=0)
        yield
    finally:
        try:
            pyroute2_netns.setns(home, flags=0)
        finally:
            os.close(target)
            os.close(home)


def sysctl(name: str, values: Iterable[tuple[str, str]]) -> None:
    """Write /proc/sys keys ("net/ipv4/ip_forward", "1") inside the namespace: /proc/sys/net
    shows the namespace of the thread that opens it."""
    with entered(name):
        for key, value in values:
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(value)


# ---------------------------------------------------------------- netfilter


def iptables_restore(name: str, family: int, text: str, noflush: bool = True) -> None:
    """Load rules with iptables-restore (ip6tables-restore) in the namespace. --noflush is how
    kube-proxy and felix load (and how proxy.netfilter reads their concatenated text)."""
    argv = ["ip", "netns", "exec", name, RESTORE[family], "-w"]
    if noflush:
        argv.append("--noflush")
    done = subprocess.run(argv, input=text, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        raise LiveError(f"{RESTORE[family]} in {name} failed: {_first_line(done.stderr)}")


def empty_tables(name: str, family: int) -> None:
    """Flush every table and delete the user chains (so that sets can be destroyed)."""
    iptables_restore(name, family, EMPTY_TABLES, noflush=False)


def load_ipsets(name: str, sets: Iterable[IPSet]) -> None:
    """Replace the namespace's IP sets with `sets` (ipset is per network namespace, as
    iptables is); the rules that reference the old ones must be gone already."""
    from pyroute2.ipset import IPSet as Netlink

    with entered(name):
        ipset = Netlink()  # its netlink socket opens in the entered namespace
        try:
            ipset.destroy()  # every set of the namespace
            for s in sets:
                family = socket.AF_INET6 if s.family == 6 else socket.AF_INET
                ipset.create(s.name, stype=s.type, family=family, hashsize=IPSET_HASHSIZE,
                             maxelem=IPSET_MAXELEM)
                etype = ",".join(SET_TYPES[s.type])
                for member in s.members:
                    ipset.add(s.name, _entry(s, member), family=family, etype=etype)
        finally:
            ipset.close()


def _entry(s: IPSet, member: str) -> list:
    """An `ipset add` member ("10.0.0.1,tcp:80") as pyroute2's entry list."""
    from pyroute2.ipset import PortEntry

    parts = member.split(",")
    if member.endswith(" nomatch") or s.type not in _REALISED_SET_TYPES:
        raise LiveError(f"ipset {s.name}: {s.type} member {member!r} is not realised live")
    out: list = []
    for part, dim in zip(parts, SET_TYPES[s.type], strict=True):
        if dim == "port":
            proto, _, port = part.rpartition(":")
            out.append(PortEntry(int(port), protocol=PORT_PROTOCOLS[proto or "tcp"]))
        else:
            out.append(part)
    return out


_REALISED_SET_TYPES = ("hash:ip", "hash:net", "hash:ip,port", "hash:net,port",
                       "hash:ip,port,ip", "hash:ip,port,net")

# nfnetlink_acct (include/uapi/linux/netfilter/nfnetlink_acct.h)
NETLINK_NETFILTER = 12
NFNL_SUBSYS_ACCT, NFNL_MSG_ACCT_NEW, NFACCT_NAME = 7, 0, 1
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2


def create_nfacct(name: str, counters: Iterable[str]) -> None:
    """Create kube-proxy's nfacct counters (pkg/proxy/metrics: it creates them at startup;
    `-m nfacct` refuses to load naming one that does not exist). pyroute2 has no nfacct API:
    one NFNL_MSG_ACCT_NEW message per counter, as libnetfilter_acct sends it."""
    with entered(name):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    with sock:
        sock.bind((0, 0))
        for seq, counter in enumerate(counters, 1):
            value = counter.encode() + b"\0"
            attr = struct.pack("=HH", 4 + len(value), NFACCT_NAME) + value
            attr += b"\0" * (-len(attr) % 4)
            body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + attr
            header = struct.pack("=IHHII", 16 + len(body), NFNL_SUBSYS_ACCT << 8 |
                                 NFNL_MSG_ACCT_NEW, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
                                 seq, 0)
            sock.send(header + body)
            reply = sock.recv(4096)
            kind = struct.unpack_from("=H", reply, 4)[0]
            code = -struct.unpack_from("=i", reply, 16)[0] if kind == NLMSG_ERROR else 0
            if code not in (0, errno.EBUSY, errno.EEXIST):
                raise LiveError(f"cannot create nfacct counter {counter} in {name}: "
                                f"{os.strerror(code)}")


def flush_conntrack(name: str) -> None:
    """Forget every connection the namespace tracks (between probe rounds)."""
    from pyroute2 import Conntrack

    # pyroute2 opens the netlink socket on first use: the whole exchange stays inside.
    with entered(name):
        for family in (socket.AF_INET, socket.AF_INET6):
            ct = Conntrack(nfgen_family=family)
            try:
                ct.flush()
            finally:
                ct.close()


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"
