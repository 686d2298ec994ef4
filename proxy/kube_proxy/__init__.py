"""kube-proxy: compile Services and EndpointSlices into iptables and IPVS state per node."""
