"""Live mode: the emulated cluster built for real in Linux network namespaces, then probed.

`up` realises what netsim.dataplane computed (Calico's devices, addresses, routes, neighbour and
FDB entries; kube-proxy's and felix's iptables rules and felix's IP sets) with pyroute2 and
iptables-restore, and starts servers on every pod's container ports; `probe` opens real
connections and sets each result beside the walk's prediction; `down` removes it all. The
kernel is the referee: every disagreement is a bug in the emulator or in this realisation.
"""

from netsim.live.state import LiveError

__all__ = ["LiveError"]
