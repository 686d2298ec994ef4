"""A sidecar config as `istioctl proxy-config` prints it (tables) and as Envoy dumps it (JSON)."""

from __future__ import annotations

from typing import Any

from proxy.sidecar_types import (
    BLACKHOLE,
    HTTP,
    PASSTHROUGH,
    TCP,
    Cluster,
    FilterChain,
    Listener,
    Route,
    RouteConfig,
    RouteMatch,
    SidecarConfig,
    StringMatch,
)

SECTIONS = ("clusters", "listeners", "routes", "endpoints")

# ALPN lists istioctl names (istioctl/pkg/writer/envoy/configdump/listener.go protDescrs).
_ALPN_NAMES = {
    ("http/1.0", "http/1.1", "h2c", "istio-http/1.0", "istio-http/1.1", "istio-h2"):
        "HTTP TLS",
    ("istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"): "Istio HTTP Plain",
    ("istio-peer-exchange", "istio"): "TCP TLS",
    ("http/1.0", "http/1.1", "h2c"): "HTTP",
}


def tabwrite(rows: list[list[str]], padding: int) -> str:
    """Go's text/tabwriter as istioctl sets it up: cells padded, the last cell of a row not."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(w + padding) for c, w in zip(r, widths, strict=False))
                   + r[-1] + "\n" for r in rows)


# ---------------------------------------------------------------- listeners


def chain_match(chain: FilterChain) -> str:
    """The MATCH column: SNI, transport, ALPN, destination address/port, or ALL."""
    m = chain.match
    parts = []
    if m.transport_protocol:
        parts.append(f"Trans: {m.transport_protocol}")
    if m.application_protocols:
        named = _ALPN_NAMES.get(tuple(m.application_protocols))
        parts.append(f"App: {named or ','.join(m.application_protocols)}")
    port = f":{m.destination_port}" if m.destination_port is not None else ""
    if m.prefix_ranges:
        parts.append(f"Addr: {','.join(m.prefix_ranges)}{port}")
    elif port:
        parts.append(f"Addr: *{port}")
    return "; ".join(parts) or "ALL"


def chain_destination(chain: FilterChain) -> str:
    """The DESTINATION column: a route config, a cluster, or an inline route."""
    if chain.protocol == HTTP:
        if chain.route_config is not None:
            return f"Route: {chain.route_config}"
        if chain.inline_prefix is not None:
            return f"Inline Route: {chain.inline_prefix}*"
        return _cluster_ref(chain.cluster or "")
    if chain.cluster == BLACKHOLE:  # istioctl skips tcp_proxy filters to BlackHoleCluster
        return "Non-HTTP/Non-TCP"
    return _cluster_ref(chain.cluster or "")


def _cluster_ref(name: str) -> str:
    return name if "Cluster" in name else f"Cluster: {name}"


def _listener_type(lst: Listener) -> str:
    chains = (*lst.chains, *((lst.default_chain,) if lst.default_chain else ()))
    http = sum(c.protocol == HTTP for c in chains)
    tcp = sum(c.protocol == TCP and c.cluster != BLACKHOLE for c in chains)
    return ("HTTP+TCP" if tcp else "HTTP") if http else ("TCP" if tcp else "UNKNOWN")


def listeners_table(config: SidecarConfig) -> str:
    rows = [["ADDRESSES", "PORT", "MATCH", "DESTINATION"]]
    for lst in sorted(config.listeners, key=lambda x: (x.port, x.address, _listener_type(x))):
        chains = (*lst.chains, *((lst.default_chain,) if lst.default_chain else ()))
        matches = sorted(((chain_match(c), chain_destination(c)) for c in chains),
                         key=lambda m: m[1], reverse=True)
        addresses = ",".join((lst.address, *lst.additional_addresses))
        rows += [[addresses, str(lst.port), m, d] for m, d in matches]
    return tabwrite(rows, 1)


# ---------------------------------------------------------------- routes


def describe_domains(domains: tuple[str, ...]) -> str:
    """The DOMAINS column: port-less domains, expanded names folded, two then "+ N more..."."""
    if not domains:
        return ""
    if len(domains) == 1:
        return domains[0]
    bare = [d for d in domains if ":" not in d or (d.count(":") > 2 and d.endswith("]"))]
    unique = set(bare)
    drop = {d for d in bare for suffix in (".svc.cluster.local", ".svc")
            if d.endswith(suffix) and d[: -len(suffix)] in unique}
    bare = [d for d in bare if d not in drop]
    if len(bare) > 2:
        return f"{', '.join(bare[:2])} + {len(bare) - 2} more..."
    return ", ".join(bare)


def describe_match(match: RouteMatch) -> str:
    """The MATCH column: prefix*, the exact path, or the regex; headers are not shown."""
    if match.path_kind == "prefix":
        return f"{match.path}*"
    if match.path_kind == "path":
        return match.path
    return f'regex regex:"{match.path}"'


def _is_passthrough(route: Route) -> bool:
    return len(route.clusters) == 1 and route.clusters[0].cluster == PASSTHROUGH \
        and route.redirect is None and route.direct_response is None


def _vs_ref(key: str | None) -> str:
    if not key:
        return ""
    ns, name = key.split("/", 1)
    return f"{name}.{ns}"


def routes_table(config: SidecarConfig) -> str:
    rows = [["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"]]
    for rc in config.routes:
        for vh in rc.virtual_hosts:
            domains = describe_domains(vh.domains)
            rows += [[rc.name, vh.name, domains, describe_match(r.match),
                      _vs_ref(r.virtual_service)]
                     for r in vh.routes if not _is_passthrough(r)]
            if not vh.routes:
                rows.append([rc.name, vh.name, domains, "/*", "404"])
    return tabwrite(rows, 5)


# ---------------------------------------------------------------- clusters and endpoints


def _cluster_key(c: Cluster) -> tuple[str, str, int, str]:
    if c.direction:
        return c.fqdn, c.subset, c.port or 0, c.direction
    return c.name, "", 0, ""


def clusters_table(config: SidecarConfig) -> str:
    rows = [["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]]
    for c in sorted(config.clusters, key=_cluster_key):
        if c.direction:
            rows.append([c.fqdn, str(c.port), c.subset or "-", c.direction, c.type,
                         _vs_ref(c.destination_rule)])
        else:
            rows.append([c.name, "-", "-", "-", c.type, ""])
    return tabwrite(rows, 5)


def endpoints_table(config: SidecarConfig) -> str:
    """Envoy's /clusters hosts; ORIGINAL_DST clusters have none until they carry traffic."""
    entries = sorted(((e.address, e.port or 0, c.name, e.health) for c in config.clusters
                      if c.type != "ORIGINAL_DST" for e in c.endpoints),
                     key=lambda t: (t[0], t[1], t[2]))
    rows = [["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]]
    rows += [[f"{a}:{p}" if p else a, health, "OK", name] for a, p, name, health in entries]
    return tabwrite(rows, 5)


TABLES = {"clusters": clusters_table, "listeners": listeners_table, "routes": routes_table,
          "endpoints": endpoints_table}


def render_text(config: SidecarConfig, section: str = "all") -> str:
    """One section's table, or every section's separated by a blank line."""
    if section != "all":
        return TABLES[section](config)
    return "\n".join(TABLES[s](config) for s in SECTIONS)


# ---------------------------------------------------------------- JSON (Envoy's field names)


def _address(ip: str, port: int | None) -> dict:
    if ip.startswith("unix://"):
        return {"pipe": {"path": ip[len("unix://"):]}}
    return {"socketAddress": {"address": ip, "portValue": port}}


def _chain_json(c: FilterChain) -> dict:
    m = c.match
    match = {k: v for k, v in (
        ("destinationPort", m.destination_port), ("transportProtocol", m.transport_protocol),
        ("applicationProtocols", list(m.application_protocols) or None),
        ("prefixRanges", [{"addressPrefix": p.split("/")[0],
                           "prefixLen": int(p.split("/")[1])} for p in m.prefix_ranges]
         or None)) if v is not None}
    if c.protocol == HTTP:
        hcm: dict[str, Any] = {}
        if c.route_config is not None:
            hcm["rds"] = {"routeConfigName": c.route_config}
        else:
            hcm["routeConfig"] = {"virtualHosts": [{"name": "inline", "domains": ["*"],
                                                    "routes": [{"match": {"prefix": (
                                                        c.inline_prefix or "/")},
                                                        "route": {"cluster": c.cluster}}]}]}
        flt = {"name": "envoy.filters.network.http_connection_manager", "typedConfig": hcm}
    else:
        flt = {"name": "envoy.filters.network.tcp_proxy",
               "typedConfig": {"statPrefix": c.cluster, "cluster": c.cluster}}
    out: dict[str, Any] = {"filterChainMatch": match, "filters": [flt]}
    if c.name:
        out["name"] = c.name
    if c.tls:
        out["transportSocket"] = {"name": "envoy.transport_sockets.tls"}
    return out


def listener_json(lst: Listener) -> dict:
    out: dict[str, Any] = {"name": lst.name, "address": _address(lst.address, lst.port),
                           "filterChains": [_chain_json(c) for c in lst.chains]}
    if lst.additional_addresses:
        out["additionalAddresses"] = [{"address": _address(a, lst.port)}
                                      for a in lst.additional_addresses]
    if lst.default_chain:
        out["defaultFilterChain"] = _chain_json(lst.default_chain)
    if lst.use_original_dst:
        out["useOriginalDst"] = True
    if lst.direction:
        out["trafficDirection"] = lst.direction
    if not lst.bind_to_port:
        out["bindToPort"] = False
    return out


def _string_match_json(sm: StringMatch) -> dict:
    if sm.kind == "present":
        return {"presentMatch": True}
    key = {"exact": "exact", "prefix": "prefix", "regex": "safeRegex"}[sm.kind]
    value: Any = {"regex": sm.value} if sm.kind == "regex" else sm.value
    return {"stringMatch": {key: value}}


def route_json(r: Route) -> dict:
    m = r.match
    match: dict[str, Any] = {{"prefix": "prefix", "path": "path", "regex": "safeRegex"}[
        m.path_kind]: {"regex": m.path} if m.path_kind == "regex" else m.path}
    if not m.case_sensitive:
        match["caseSensitive"] = False
    if m.headers:
        match["headers"] = [{"name": h.name, **_string_match_json(h.match),
                             **({"invertMatch": True} if h.invert else {})} for h in m.headers]
    if m.query:
        match["queryParameters"] = [{"name": n, **_string_match_json(s)} for n, s in m.query]
    out: dict[str, Any] = {"name": r.name, "match": match} if r.name else {"match": match}
    if r.redirect is not None:
        out["redirect"] = {k: v for k, v in (
            ("responseCode", r.redirect.code), ("pathRedirect", r.redirect.uri),
            ("hostRedirect", r.redirect.authority), ("schemeRedirect", r.redirect.scheme),
            ("portRedirect", r.redirect.port)) if v is not None}
    elif r.direct_response is not None:
        out["directResponse"] = {"status": r.direct_response[0]}
    else:
        action: dict[str, Any] = {"timeout": r.timeout or "0s"}
        if len(r.clusters) == 1:
            action["cluster"] = r.clusters[0].cluster
        else:
            action["weightedClusters"] = {"clusters": [
                {"name": w.cluster, "weight": w.weight} for w in r.clusters]}
        if r.retry is not None:
            action["retryPolicy"] = {k: v for k, v in (
                ("retryOn", r.retry.retry_on), ("numRetries", r.retry.attempts),
                ("perTryTimeout", r.retry.per_try_timeout),
                ("retriableStatusCodes", list(r.retry.status_codes) or None)) if v}
        if r.mirrors:
            action["requestMirrorPolicies"] = [
                {"cluster": mi.cluster, "runtimeFraction": {"defaultValue": {
                    "numerator": mi.percent * 10000, "denominator": "MILLION"}}}
                for mi in r.mirrors]
        if r.rewrite is not None:
            action.update({k: v for k, v in (
                ("prefixRewrite", r.rewrite.uri), ("hostRewriteLiteral", r.rewrite.authority))
                if v})
        out["route"] = action
    if r.fault is not None:
        f = r.fault
        fault: dict[str, Any] = {}
        if f.delay:
            fault["delay"] = {"fixedDelay": f.delay, "percentage": {
                "numerator": round(f.delay_percent * 10000), "denominator": "MILLION"}}
        if f.abort_status or f.abort_grpc:
            fault["abort"] = {("httpStatus" if f.abort_status else "grpcStatus"):
                              f.abort_status or f.abort_grpc, "percentage": {
                "numerator": round(f.abort_percent * 10000), "denominator": "MILLION"}}
        out["typedPerFilterConfig"] = {"envoy.filters.http.fault": fault}
    if r.virtual_service:
        ns, name = r.virtual_service.split("/", 1)
        out["metadata"] = {"filterMetadata": {"istio": {
            "config": f"/apis/networking.istio.io/v1alpha3/namespaces/{ns}/virtual-service/"
                      f"{name}"}}}
    return out


def route_config_json(rc: RouteConfig) -> dict:
    return {"name": rc.name, "virtualHosts": [
        {"name": v.name, "domains": list(v.domains), "routes": [route_json(r) for r in v.routes]}
        for v in rc.virtual_hosts], "validateClusters": False,
        **({"ignorePortInHostMatching": True} if rc.ignore_port_in_host_matching else {})}


def cluster_json(c: Cluster) -> dict:
    out: dict[str, Any] = {"name": c.name, "type": c.type,
                           "connectTimeout": c.connection_pool.connect_timeout,
                           "lbPolicy": c.lb_policy}
    if c.type == "EDS":
        out["edsClusterConfig"] = {"serviceName": c.name}
    if c.direction:
        pool = c.connection_pool
        out["circuitBreakers"] = {"thresholds": [{
            "maxConnections": pool.max_connections,
            "maxPendingRequests": pool.http1_max_pending_requests,
            "maxRequests": pool.http2_max_requests, "maxRetries": pool.max_retries}]}
    if c.outlier_detection is not None:
        o = c.outlier_detection
        out["outlierDetection"] = {k: v for k, v in (
            ("consecutive5xx", o.consecutive_5xx_errors),
            ("consecutiveGatewayFailure", o.consecutive_gateway_errors),
            ("interval", o.interval), ("baseEjectionTime", o.base_ejection_time),
            ("maxEjectionPercent", o.max_ejection_percent)) if v is not None}
    if c.direction == "outbound" and c.tls_mode is None:  # auto mTLS, per endpoint label
        out["transportSocketMatches"] = [
            {"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
             "transportSocket": {"name": "envoy.transport_sockets.tls", "sni": c.sni}},
            {"name": "tlsMode-disabled", "match": {}, "transportSocket": {
                "name": "envoy.transport_sockets.raw_buffer"}}]
    elif c.direction == "outbound" and c.tls_mode != "DISABLE":
        out["transportSocket"] = {"name": "envoy.transport_sockets.tls",
                                  **({"sni": c.sni} if c.tls_mode == "ISTIO_MUTUAL" else {})}
    if c.destination_rule:
        ns, name = c.destination_rule.split("/", 1)
        out["metadata"] = {"filterMetadata": {"istio": {
            "config": f"/apis/networking.istio.io/v1alpha3/namespaces/{ns}/destination-rule/"
                      f"{name}"}}}
    return out


def endpoints_json(config: SidecarConfig) -> dict:
    """Envoy's /clusters?format=json, as `istioctl proxy-config endpoints -o json` reads it."""
    return {"clusterStatuses": [
        {"name": c.name, "hostStatuses": [
            {"address": _address(e.address, e.port),
             "healthStatus": {"edsHealthStatus": e.health}, "weight": e.weight,
             **({"metadata": {"pod": e.pod}} if e.pod else {}),
             **({"tlsMode": "istio"} if e.mtls else {})}
            for e in c.endpoints]}
        for c in config.clusters if c.endpoints and c.type != "ORIGINAL_DST"]}


def render_json(config: SidecarConfig, section: str = "all") -> Any:
    """The JSON document for a section (a list, as istioctl -o json prints), or all four."""
    parts = {
        "listeners": lambda: [listener_json(x) for x in config.listeners],
        "routes": lambda: [route_config_json(x) for x in config.routes],
        "clusters": lambda: [cluster_json(x) for x in config.clusters],
        "endpoints": lambda: endpoints_json(config),
    }
    if section != "all":
        return parts[section]()
    return {"pod": config.pod, **{s: parts[s]() for s in SECTIONS}}
