"""A sidecar's listeners: virtualOutbound, per-port outbound, virtualInbound, the bootstrap's."""

from __future__ import annotations

from proxy.sidecar_config import Context, MeshService, service_targets
from proxy.sidecar_istio import SNIFFED, is_http
from proxy.sidecar_types import (
    ALL_ISTIO_MTLS_ALPNS,
    BLACKHOLE,
    DISABLE,
    HEALTH_PORT,
    HTTP,
    INBOUND_BLACKHOLE_CHAIN,
    INBOUND_CAPTURE_PORT,
    INBOUND_CATCHALL_HTTP_CHAIN,
    INBOUND_PASSTHROUGH,
    MTLS_HTTP_ALPNS,
    MTLS_TCP_ALPNS,
    OUTBOUND_BLACKHOLE_CHAIN,
    OUTBOUND_CAPTURE_PORT,
    OUTBOUND_CATCHALL_CHAIN,
    PASSTHROUGH,
    PASSTHROUGH_CHAIN,
    PLAINTEXT_HTTP_ALPNS,
    PROMETHEUS_PORT,
    RAW_BUFFER,
    STRICT,
    TCP,
    TLS,
    VIRTUAL_INBOUND,
    VIRTUAL_OUTBOUND,
    FilterChain,
    FilterChainMatch,
    Listener,
)

WILDCARD = "0.0.0.0"
OUTBOUND, INBOUND = "OUTBOUND", "INBOUND"

# Inbound filter chain options per (protocol class, mTLS mode): transport, ALPNs, protocol,
# whether the chain terminates mTLS (pilot/pkg/networking/core/filterchain_options.go).
_OPTIONS = {
    (HTTP, STRICT): ((TLS, (), HTTP, True),),
    (HTTP, "PERMISSIVE"): ((TLS, ALL_ISTIO_MTLS_ALPNS, HTTP, True), (RAW_BUFFER, (), HTTP, False)),
    (HTTP, DISABLE): ((RAW_BUFFER, (), HTTP, False),),
    (TCP, STRICT): ((TLS, (), TCP, True),),
    (TCP, "PERMISSIVE"): ((TLS, ALL_ISTIO_MTLS_ALPNS, TCP, True), (RAW_BUFFER, (), TCP, False),
                          (TLS, (), TCP, False)),
    (TCP, DISABLE): ((RAW_BUFFER, (), TCP, False),),
    (SNIFFED, STRICT): ((TLS, MTLS_HTTP_ALPNS, HTTP, True), (TLS, (), TCP, True)),
    (SNIFFED, "PERMISSIVE"): ((TLS, MTLS_HTTP_ALPNS, HTTP, True),
                              (RAW_BUFFER, PLAINTEXT_HTTP_ALPNS, HTTP, False),
                              (TLS, MTLS_TCP_ALPNS, TCP, True), (RAW_BUFFER, (), TCP, False),
                              (TLS, (), TCP, False)),
    (SNIFFED, DISABLE): ((RAW_BUFFER, PLAINTEXT_HTTP_ALPNS, HTTP, False),
                         (RAW_BUFFER, (), TCP, False)),
}


def protocol_class(protocol: str) -> str:
    """HTTP, TCP or SNIFFED: how a listener treats a port (ModelProtocolToListenerProtocol)."""
    if is_http(protocol):
        return HTTP
    return SNIFFED if protocol == SNIFFED else TCP


def build_listeners(ctx: Context) -> list[Listener]:
    return [_virtual_outbound(ctx), *_outbound(ctx), _virtual_inbound(ctx), *_bootstrap()]


def _passthrough_cluster(ctx: Context) -> str:
    return BLACKHOLE if ctx.options.outbound_traffic_policy == "REGISTRY_ONLY" else PASSTHROUGH


def _virtual_outbound(ctx: Context) -> Listener:
    """15001: hands connections to the listener for their original destination."""
    return Listener(
        VIRTUAL_OUTBOUND, WILDCARD, OUTBOUND_CAPTURE_PORT, OUTBOUND, use_original_dst=True,
        chains=(FilterChain(OUTBOUND_BLACKHOLE_CHAIN,
                            FilterChainMatch(destination_port=OUTBOUND_CAPTURE_PORT), TCP,
                            cluster=BLACKHOLE),
                FilterChain(OUTBOUND_CATCHALL_CHAIN, FilterChainMatch(), TCP,
                            cluster=_passthrough_cluster(ctx))))


def _outbound(ctx: Context) -> list[Listener]:
    """0.0.0.0_<port> for HTTP ports (RDS "<port>"); <ip>_<port> for TCP and sniffed ports.

    Headless services get a listener per endpoint address for TCP and sniffed ports
    (listener.go buildSidecarOutboundListeners).
    """
    by_name: dict[str, Listener] = {}
    http_ports: set[int] = set()
    for svc in ctx.services:
        for sp, proto in svc.ports:
            if is_http(proto):
                http_ports.add(sp.port)
                continue
            chains = _outbound_chains(svc, sp.port, proto)
            if svc.headless:
                groups = [(e.ip,) for e in ctx.endpoints(svc, sp)]
            else:
                groups = [svc.service.cluster_ips]
            for addresses in groups:
                name = f"{addresses[0]}_{sp.port}"
                by_name.setdefault(name, Listener(
                    name, addresses[0], sp.port, OUTBOUND, chains, bind_to_port=False,
                    additional_addresses=tuple(addresses[1:])))
    for port in sorted(http_ports):
        name = f"{WILDCARD}_{port}"
        if name in by_name:  # a headless TCP port on the same number: the first one wins
            continue
        by_name[name] = Listener(
            name, WILDCARD, port, OUTBOUND, bind_to_port=False,
            chains=(FilterChain("", FilterChainMatch(transport_protocol=RAW_BUFFER,
                                                     application_protocols=PLAINTEXT_HTTP_ALPNS),
                                HTTP, route_config=str(port)),),
            default_chain=FilterChain(PASSTHROUGH_CHAIN, FilterChainMatch(), TCP,
                                      cluster=_passthrough_cluster(ctx)))
    return list(by_name.values())


def _outbound_chains(svc: MeshService, port: int, proto: str) -> tuple[FilterChain, ...]:
    cluster = f"outbound|{port}||{svc.fqdn}"
    tcp = FilterChain("", FilterChainMatch(), TCP, cluster=cluster)
    if proto != SNIFFED:
        return (tcp,)
    # Sniffed: what the HTTP inspector recognises goes to a route config of its own,
    # "<fqdn>:<port>"; the rest is TCP. No transport match, or TCP could not fall through.
    http = FilterChain("", FilterChainMatch(application_protocols=PLAINTEXT_HTTP_ALPNS),
                       HTTP, route_config=f"{svc.fqdn}:{port}")
    return (http, tcp)


def _inbound_chains(name: str, port: int | None, cls: str, mode: str, cluster: str,
                    passthrough: bool) -> list[FilterChain]:
    out = []
    for transport, alpns, proto, tls in _OPTIONS[cls, mode]:
        chain_name = name if not passthrough else (
            INBOUND_CATCHALL_HTTP_CHAIN if proto == HTTP else VIRTUAL_INBOUND)
        out.append(FilterChain(chain_name, FilterChainMatch(
            destination_port=port, transport_protocol=transport,
            application_protocols=alpns), proto, cluster=cluster, tls=tls))
    return out


def _virtual_inbound(ctx: Context) -> Listener:
    """15006: a blackhole chain, passthrough chains, then chains per service target port."""
    mode = ctx.mtls_mode(ctx.pod, None)
    chains = [FilterChain(INBOUND_BLACKHOLE_CHAIN,
                          FilterChainMatch(destination_port=INBOUND_CAPTURE_PORT), TCP,
                          cluster=BLACKHOLE)]
    chains += _inbound_chains("", None, SNIFFED, mode, INBOUND_PASSTHROUGH, passthrough=True)
    for port, proto, _ in service_targets(ctx):
        chains += _inbound_chains(f"{WILDCARD}_{port}", port, protocol_class(proto),
                                  ctx.mtls_mode(ctx.pod, port), f"inbound|{port}||",
                                  passthrough=False)
    # The original_dst listener filter (not use_original_dst) restores the destination port.
    return Listener(VIRTUAL_INBOUND, WILDCARD, INBOUND_CAPTURE_PORT, INBOUND, tuple(chains))


def _bootstrap() -> list[Listener]:
    """The health (15021) and Prometheus (15090) listeners of the bootstrap config."""
    return [Listener(f"{WILDCARD}_{port}", WILDCARD, port, "", (FilterChain(
        "", FilterChainMatch(), HTTP, cluster=cluster, inline_prefix=prefix),))
        for port, prefix, cluster in ((HEALTH_PORT, "/healthz/ready", "agent"),
                                      (PROMETHEUS_PORT, "/stats/prometheus",
                                       "prometheus_stats"))]
