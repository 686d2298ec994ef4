"""felix's endpoint marks, which carry a packet's ingress interface across IPVS (kube-proxy's
IPVS mode sends pod -> ClusterIP packets through INPUT and OUTPUT, where `-i` cannot be
matched): the mark value of each workload interface and the chains that set and dispatch on it.

Sources, projectcalico/calico felix:
- rules/epmark.go DefaultEPMarkManager: an endpoint's mark is a position in the endpoint mark
  bits (0xffe00000, 2048 positions) picked by the FNV-1 32-bit hash of the interface name,
  probing upwards past position 0 and positions already taken; position 1 (the lowest bit,
  0x200000) is reserved for "non-Calico" interfaces; markbits.MapNumberToMark spreads the
  position over the mask's bits, lowest first;
- rules/endpoints.go endpointSetMarkChain: `cali-sm-<iface>` sets the interface's mark;
- rules/dispatch.go endpointMarkDispatchChains: `cali-set-endpoint-mark` sends each
  workload interface to its `cali-sm-` chain (the same prefix tree as the workload
  dispatch chains, child chains without end rules), drops unknown `cali+` interfaces and
  marks everything else with the non-Calico mark; `cali-from-endpoint-mark` sends each
  endpoint mark to the workload's `cali-fw-` chain and drops unknown marks.

felix allocates marks in the order it learns endpoints; compile_felix allocates them in
interface-name order, which only matters when two names hash to the same position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .felix_policy import dispatch_tree
from .felix_text import (
    FROM_ENDPOINT_MARK_DISPATCH,
    FROM_WORKLOAD,
    IFACE_WILDCARD,
    MARK_ENDPOINT,
    MARK_NON_CALI_ENDPOINT,
    SET_ENDPOINT_MARK,
    SET_ENDPOINT_MARK_DISPATCH,
    R,
    length_limited_id,
    mark_matches,
    set_masked_mark,
)

FNV32_OFFSET, FNV32_PRIME = 0x811C9DC5, 0x01000193


def fnv1_32(data: bytes) -> int:
    """Go's hash/fnv New32 (FNV-1: multiply, then xor)."""
    h = FNV32_OFFSET
    for byte in data:
        h = (h * FNV32_PRIME) & 0xFFFFFFFF
        h ^= byte
    return h


def number_to_mark(number: int, mask: int = MARK_ENDPOINT) -> int:
    """markbits MapNumberToMark: the number's bits placed on the mask's bits, lowest first."""
    mark = 0
    for shift in range(32):
        if not number:
            break
        candidate = 1 << shift
        if mask & candidate:
            if number & 1:
                mark |= candidate
            number >>= 1
    if number:
        raise ValueError("not enough mark bits")
    return mark


def mark_to_number(mark: int, mask: int = MARK_ENDPOINT) -> int:
    """markbits MapMarkToNumber."""
    number, bit = 0, 0
    for shift in range(32):
        candidate = 1 << shift
        if mask & candidate:
            if mark & candidate:
                number |= 1 << bit
            bit += 1
    return number


def endpoint_marks(ifaces: Iterable[str], mask: int = MARK_ENDPOINT,
                   non_cali: int = MARK_NON_CALI_ENDPOINT,
                   hash32: Callable[[bytes], int] = fnv1_32) -> dict[str, int]:
    """The endpoint mark of each interface (GetEndpointMark), allocated in the order given.
    Raises ValueError when the positions run out ("No mark left for endpoint")."""
    positions = 1 << bin(mask).count("1")  # CurrentFreeNumberOfMark, zero included
    taken = {mark_to_number(non_cali, mask)}
    marks: dict[str, int] = {}
    for iface in ifaces:
        if iface in marks:
            continue
        total = hash32(iface.encode())
        for i in range(positions):
            prospect = (total + i) % positions
            if prospect and prospect not in taken:
                break
        else:
            raise ValueError("no endpoint mark left")
        taken.add(prospect)
        marks[iface] = number_to_mark(prospect, mask)
    return marks


def set_mark_chain(mark: int) -> list[R]:
    """endpointSetMarkChain: the body of `cali-sm-<iface>`."""
    return [R(target=set_masked_mark(mark, MARK_ENDPOINT))]


def endpoint_mark_chains(marks: dict[str, int]) -> dict[str, list[R]]:
    """Every workload's `cali-sm-` chain and the two endpoint-mark dispatch chains."""
    chains = {length_limited_id(SET_ENDPOINT_MARK, iface): set_mark_chain(mark)
              for iface, mark in marks.items()}
    children, root = dispatch_tree(list(marks), SET_ENDPOINT_MARK_DISPATCH,
                                   SET_ENDPOINT_MARK, True)
    chains.update(children)
    chains[SET_ENDPOINT_MARK_DISPATCH] = root + [
        R(target="-j DROP", in_iface=IFACE_WILDCARD, comments=("Unknown endpoint",)),
        R(target=set_masked_mark(MARK_NON_CALI_ENDPOINT, MARK_ENDPOINT),
          comments=("Non-Cali endpoint mark",)),
    ]
    from_mark = [R((mark_matches(marks[iface], MARK_ENDPOINT),),
                   f"-g {length_limited_id(FROM_WORKLOAD, iface)}") for iface in sorted(marks)]
    from_mark.append(R(target="-j DROP", comments=("Unknown interface",)))
    chains[FROM_ENDPOINT_MARK_DISPATCH] = from_mark
    return chains
