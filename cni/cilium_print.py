"""cilium-dbg output for the emulated maps, byte for byte as the v1.16 commands print it.

Formats from cilium/cilium cilium-dbg/cmd (bpf_ipcache_list.go, bpf_endpoint_list.go,
bpf_lb_list.go, bpf_policy_get.go, bpf_ct_list.go, bpf_nat_list.go, identity.go, helpers.go
TablePrinter) and the String()/Dump() methods of pkg/maps/{ipcache,lxcmap,lbmap,policymap,
ctmap,nat}. Tables go through Go's text/tabwriter (minwidth 5, padding 3, space padding; the
identity list uses minwidth 2), emulated by `tabwrite`. Where Go iterates a map (random
order) netsim sorts: addresses numerically, slot 0 first, policy rows by PolicyEntriesDump
ordering.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from cni.cilium_identity import UNKNOWN_LABELS
from cni.cilium_maps import (
    CT_ENTRY_FLAGS,
    INGRESS,
    TUPLE_F_IN,
    TUPLE_F_RELATED,
    TUPLE_F_SERVICE,
    CtEntry,
    CtKey,
    NatEntry,
    PolicyEntry,
    proto_name,
    service_flag_words,
)

# ---------------------------------------------------------------- Go text/tabwriter


def tabwrite(text: str, minwidth: int = 5, padding: int = 3, padchar: str = " ") -> str:
    """Go's tabwriter.NewWriter(w, minwidth, 0, padding, padchar, 0) applied to `text`.

    Cells are tab-terminated; a line's last cell is not part of any column. A column's width
    is fixed per block of consecutive lines that have a cell in it (Writer.format). Text after
    the last newline is flushed as a final line, where an empty last cell does not count.
    """
    lines = text.split("\n")
    tail = lines.pop()
    cells = [line.split("\t") for line in lines]
    if tail:
        last = tail.split("\t")
        if len(last) > 1 and last[-1] == "":
            last.pop()  # Flush terminates the pending cell only when it is non-empty
        cells.append(last)
    out: list[str] = []
    widths: list[int] = []

    def write(lo: int, hi: int) -> None:
        for line in cells[lo:hi]:
            out.append("".join(cell + padchar * (widths[j] - len(cell))
                               if j < len(widths) and j < len(line) - 1 else cell
                               for j, cell in enumerate(line)))

    def fmt(lo: int, hi: int) -> None:
        column = len(widths)
        this = lo
        while this < hi:
            if column >= len(cells[this]) - 1:
                this += 1
                continue
            write(lo, this)
            lo = this
            width = minwidth
            while this < hi and column < len(cells[this]) - 1:
                width = max(width, len(cells[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(lo, this)
            widths.pop()
            lo = this
        write(lo, hi)

    fmt(0, len(cells))
    return "\n".join(out) + ("" if tail else "\n" if out else "")


def table(first: str, second: str, rows: Mapping[str, list[str]],
          order: Iterable[str] | None = None) -> str:
    """helpers.go TablePrinter: a title row, then each key with its values one per line."""
    text = f"{first}\t{second}\n"
    for key in (order if order is not None else rows):
        for i, value in enumerate(rows[key]):
            text += f"{key if i == 0 else ''}\t{value}\t\n"
    return tabwrite(text)


def _addr_order(text: str) -> tuple:
    """Sort key for "ip", "ip/len", "ip:port[/i]" and "[ip]:port" strings: address, then port."""
    host, port = text.split("/")[0], 0
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = int(rest[1:] or 0)
    elif host.count(":") == 1:
        host, _, rest = host.partition(":")
        port = int(rest or 0)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return (9, 0, 0, text)
    return (addr.version, int(addr), port, text)


def _mac(mac: str) -> str:
    return mac.upper()


# ---------------------------------------------------------------- ipcache, endpoints


def ipcache_list(node) -> str:
    """`cilium-dbg bpf ipcache list`: IP PREFIX/ADDRESS and the RemoteEndpointInfo value."""
    rows = {e.prefix: [f"identity={e.identity} encryptkey={e.encrypt_key} "
                       f"tunnelendpoint={e.tunnel_text} flags="
                       f"{'skiptunnel' if e.flags & 1 else '<none>'}"]
            for e in node.ipcache_entries()}
    return table("IP PREFIX/ADDRESS", "IDENTITY", rows, sorted(rows, key=_addr_order))


def endpoint_list(node) -> str:
    """`cilium-dbg bpf endpoint list`: the cilium_lxc entries, keys printed "ip:0"."""
    rows = {}
    for ip, e in node.endpoints_by_ip.items():
        key = f"{ip}:0"  # EndpointKey.String(): address (cluster 0) ":" key
        rows[key] = ["(localhost)" if e.is_host else
                     f"id={e.id:<5} sec_id={e.sec_id:<5} flags=0x{e.flags:04X} "
                     f"ifindex={e.ifindex:<3} mac={_mac(e.mac)} nodemac={_mac(e.node_mac)}"]
    return table("IP ADDRESS", "LOCAL ENDPOINT INFO", rows, sorted(rows, key=_addr_order))


# ---------------------------------------------------------------- load balancing


def _frontend(address: str, port: int, scope: str) -> str:
    """Service4Key.String() in v1.16: JoinHostPort, "/i" for the internal scope."""
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}" + ("/i" if scope == "internal" else "")


def lb_list(node, variant: str = "services") -> str:
    """`cilium-dbg bpf lb list` and its --frontends, --backends and --revnat variants."""
    lb = node.lb
    if variant == "revnat":
        rows = {str(i): [_frontend(a, p, "external")] for i, (a, p) in lb.revnat.items()}
        return table("ID", "BACKEND ADDRESS (REVNAT_ID) (SLOT)", rows, sorted(rows, key=int))
    if variant == "backends":
        rows = {str(b.id): [f"{b.protocol}://{b.address}"] for b in lb.backends.values()}
        return table("ID", "BACKEND ADDRESS (REVNAT_ID) (SLOT)", rows, sorted(rows, key=int))
    rows: dict[str, list[str]] = {}
    for svc in sorted(lb.services.values(), key=lambda s: (_addr_order(s.frontend[0]),
                                                          s.frontend[1], s.frontend[2],
                                                          s.scope)):
        key = _frontend(svc.frontend[0], svc.frontend[1], svc.scope)
        out = rows.setdefault(key, [])
        v6 = ":" in svc.frontend[0]
        if variant == "frontends":  # Service4Value.String(): backend_id count (revnat) flags
            master_id = svc.affinity_timeout
            out.append(f"{master_id} {svc.count} ({svc.rev_nat_index}) "
                       f"[0x{svc.flags & 0xFF:x} 0x{svc.flags >> 8:x}]")
            # slot entries carry only backend_id and rev_nat_index (lbmap upsertServiceProto)
            out += [f"{bid} 0 ({svc.rev_nat_index}) [0x0 0x0]" for bid in svc.backend_ids]
            continue
        zero = "[::]" if v6 else "0.0.0.0"
        out.append(f"{zero}:0 ({svc.rev_nat_index}) (0) "
                   f"[{', '.join(service_flag_words(svc.flags))}] ")
        for slot, bid in enumerate(svc.backend_ids, start=1):
            b = lb.backends.get(bid)
            if b is None:
                out.append(f"backend {bid} not found")
            else:
                host = f"[{b.address}]" if v6 else b.address
                out.append(f"{host}:{b.port} ({svc.rev_nat_index}) ({slot})")
    second = "BACKEND ID" if variant == "frontends" else "BACKEND ADDRESS (REVNAT_ID) (SLOT)"
    return table("SERVICE ADDRESS", second, rows, sorted(rows, key=_addr_order))


# ---------------------------------------------------------------- policy


def _labels_of(state, identity: int) -> tuple[str, ...]:
    if identity == 0:
        return UNKNOWN_LABELS
    ident = state.identities.get(identity)
    return ident.labels if ident is not None else ()


def policy_get(node, endpoint_id: int) -> str:
    """`cilium-dbg bpf policy get <id>`: the endpoint's policy map with identity labels."""
    text = ("POLICY\tDIRECTION\tLABELS (source:key[=value])\tPORT/PROTO\tPROXY PORT\t"
            "AUTH TYPE\tBYTES\tPACKETS\tPREFIX\t\n")
    for e in node.policy_entries(endpoint_id):
        text += _policy_rows(node.state, e)
    out = tabwrite(text)
    return out


def _policy_rows(state, e: PolicyEntry) -> str:
    policy = "Deny" if e.deny else "Allow"
    direction = "Ingress" if e.key.direction == INGRESS else "Egress"
    proxy = str(e.proxy_port) if e.proxy_port else "NONE"
    labels = _labels_of(state, e.key.identity) or (str(e.key.identity),)
    text = (f"{policy}\t{direction}\t{labels[0]}\t{e.key.port_proto}\t{proxy}\tdisabled\t0\t0\t"
            f"{e.key.prefix_len}\t\n")
    for label in labels[1:]:
        text += f"\t\t{label}\t\t\t\t\t\t\t\n"
    return text


# ---------------------------------------------------------------- identities


def identity_list(state) -> str:
    """`cilium-dbg identity list`: every identity the agent knows, by id, one label a row."""
    text = "ID\tLABELS\n"
    for number in sorted(state.identities):
        labels = state.identities[number].labels
        text += f"{number}\t{labels[0]}\n" + "".join(f"\t{label}\n" for label in labels[1:])
    return tabwrite(text, minwidth=2)


# ---------------------------------------------------------------- conntrack and NAT


def _tuple(key: CtKey) -> str:
    """TupleKey4Global.Dump / CtKey4Global.Dump: protocol, direction and addresses."""
    proto = proto_name(key.proto)
    if key.flags & TUPLE_F_SERVICE:
        text = f"{proto} SVC {key.saddr}:{key.sport} -> {key.daddr}:{key.dport} "
    else:
        way = "IN" if key.flags & TUPLE_F_IN else "OUT"
        text = f"{proto} {way} {key.saddr}:{key.sport} -> {key.daddr}:{key.dport} "
    if key.flags & TUPLE_F_RELATED:
        text += "related "
    return text


def _ct_flags(flags: int) -> str:
    names = "".join(f"{name} " for i, name in enumerate(CT_ENTRY_FLAGS)
                    if flags & (1 << i) and name != "Reserved1")
    unknown = flags & ~((1 << len(CT_ENTRY_FLAGS)) - 1)
    extra = f"Unknown=0x{unknown:04x} " if unknown else ""
    return f"Flags=0x{flags:04x} [ {names}{extra}]"


def ct_entry_text(key: CtKey, e: CtEntry) -> str:
    """One line of `cilium-dbg bpf ct list global` (v1.16 CtEntry.StringWithTimeDiff)."""
    return (f"{_tuple(key)}expires={e.lifetime} RxPackets={e.rx_packets} RxBytes={e.rx_bytes} "
            f"RxFlagsSeen=0x{e.rx_flags_seen:02x} LastRxReport={e.last_rx_report} "
            f"TxPackets={e.tx_packets} TxBytes={e.tx_bytes} TxFlagsSeen=0x{e.tx_flags_seen:02x} "
            f"LastTxReport={e.last_tx_report} {_ct_flags(e.flags)} RevNAT={e.rev_nat_index} "
            f"SourceSecurityID={e.src_sec_id} IfIndex={e.ifindex} BackendID={e.backend_id} \n")


def ct_list(entries: Iterable[tuple[CtKey, CtEntry]]) -> str:
    """`cilium-dbg bpf ct list global`: the TCP map, then the non-TCP map, each dump
    followed by the newline fmt.Println adds."""
    tcp, other = "", ""
    for key, e in entries:
        if key.proto == 6:
            tcp += ct_entry_text(key, e)
        else:
            other += ct_entry_text(key, e)
    return f"{tcp}\n{other}\n"


def nat_list(entries: Iterable[NatEntry]) -> str:
    """`cilium-dbg bpf nat list`: cilium_snat_v4_external entries (NatEntry4.Dump)."""
    out = ""
    for n in entries:
        which = "DST" if n.key.flags & TUPLE_F_IN else "SRC"
        out += (f"{_tuple(n.key)}XLATE_{which} {n.addr}:{n.port} Created={n.created}sec "
                f"NeedsCT={n.needs_ct}\n")
    return f"{out}\n"
