"""Packet-handling programs: netfilter, kube-proxy compilers, sidecars, ingress."""
