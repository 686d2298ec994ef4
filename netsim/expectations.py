"""Connectivity expectations: a team's own assertions about who may reach whom, read from YAML.

`netsim test FILE... -f CLUSTER` traces every expectation through the emulated dataplane,
following every load-balancing path, and reports each source pod as its own test case (a
table, `-o json`, JUnit XML with `--junit`; exit 0 when all pass, 1 otherwise, 2 on a bad
file). The format::

    apiVersion: netsim/v1alpha1
    kind: ConnectivityExpectations
    metadata: {name: shop}
    spec:
      expectations:
      - name: web reaches api              # required, unique in the document
        from: {workload: Deployment/shop/web}
        to: {service: shop/api, port: http}
        http: GET /api/orders              # optional
        expect: allow                      # required: allow | deny
        via: shop/api-from-web             # optional
        deliveredTo: {workload: shop/api}  # optional (allow only)
        clientIPPreserved: true            # optional (allow only)

`from` names the senders, exactly one of:

- `pod: NS/NAME`: a pod; both parts may be globs (`shop/web-*`);
- `workload: [KIND/]NS/NAME`: the pods of a Deployment, StatefulSet, DaemonSet or
  ReplicaSet (any kind when KIND is left out);
- `namespace: NS` and/or `selector: {LABEL: VALUE, ...}` (or a full LabelSelector with
  `matchLabels`/`matchExpressions`): every pod of the namespace that the selector matches;
- `external: IP`: a client outside the cluster with this address;
- `node: NAME`: the node itself (its InternalIP, host network).

Every pod a pattern matches is its own case, reported on its own line ("web reaches api
[shop/web-69898bbbd5-js95p]").

`to` names the destination, exactly one of:

- `service: NS/NAME` with `port: NUMBER|NAME` (optional when the Service has one port): its
  cluster IP; from `external`, its load-balancer address, external IP or NodePort;
- `pod`, `workload`, `namespace`/`selector` as in `from`, with `port: NUMBER|NAME` (a container
  port name, looked up in each pod): each matching pod's own address, one case per pod (a pod
  is never tested against itself);
- `ingress: {host: HOST, path: /, scheme: http|https, method: GET}`: the request goes to the
  ingress controller that serves the host, through its load balancer from outside;
- `address: IP:PORT` (or `address: IP` with `port`); `node: NAME` with `port`.
- `name: NAME` with `port`: a DNS name, resolved from each sender as its resolver would
  (search path, ndots); the lookup is traced first, so a policy dropping DNS fails the case.

`protocol` is TCP, UDP or SCTP: by default TCP, or the named Service port's own protocol.
`http` is the request the connection carries, for the L7 hops (sidecars, Cilium's HTTP
policy): `METHOD /path` (the host is the Service's DNS name, NAME.NS.svc.cluster.local with
`:PORT` unless 80, or the destination address) or `METHOD http://host/path`; TCP only, and
not with `ingress` (which says `method` itself). Inside an Istio mesh, give it for HTTP and
gRPC ports (gRPC: `POST /package.Service/Method`): without a request the client's sidecar
treats the connection as opaque TCP and passes it through in plaintext.

Checks, over every path of the trace:

- `expect: allow` passes when every path is delivered (a socket accepted the packet and the
  reply came back); `deny` when none is. Some but not all is `partial`, which fails both.
- `via: [KIND ]NS/NAME` (or `NAME` for cluster-scoped policies) names the policy that must
  decide. For `allow`, it must be among the policies that allowed each path: the
  NetworkPolicy/AdminNetworkPolicy rules that admit the connection as it arrives at the
  destination pod (policies.engine, on the last leg when a proxy is on the way) and the
  Istio AuthorizationPolicy whose ALLOW rule matched. For `deny`, each path's drop must name
  it: the deciding component's detail (Calico's and Cilium's drops name the isolating
  policies, a sidecar names its AuthorizationPolicy) and the last hop; for drops that no
  policy makes, any name there counts (a Service whose loadBalancerSourceRanges refused the
  client). KIND (NetworkPolicy, AuthorizationPolicy, ...) narrows the match.
- `deliveredTo` (pod, workload or namespace/selector): every path ends at one of these pods.
- `clientIPPreserved`: whether the destination pod receives the packet from the sender's own
  address (as it enters the pod, before a sidecar there; an ingress controller or SNAT
  replaces it).

A malformed file is an input error naming the file, document, expectation and field path.
A reference the cluster cannot resolve (no such pod, Service or port) is an ERROR result of
that case: the file is fine and the cluster changed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from netsim.errors import InputError, Source
from netsim.fields import Fields
from netsim.model import LabelSelector, Pod
from netsim.packet import HTTP_METHODS, parse_http
from netsim.parse.meta import parse_selector
from netsim.sources import read_input

API_VERSION = "netsim/v1alpha1"
KIND = "ConnectivityExpectations"
EXPECTS = ("allow", "deny")
PROTOCOLS = ("TCP", "UDP", "SCTP")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
POD_KEYS = ("pod", "workload", "namespace", "selector")
FROM_KEYS = (*POD_KEYS, "external", "node")
TO_KEYS = ("service", *POD_KEYS, "ingress", "address", "name", "node", "port")
EXPECTATION_KEYS = ("name", "from", "to", "protocol", "http", "expect", "via", "deliveredTo",
                    "clientIPPreserved")
INGRESS_KEYS = ("host", "path", "scheme", "method")


@dataclass(frozen=True, slots=True)
class PodSet:
    """Pods named by a glob pattern, a workload or a label selector."""

    kind: str  # "pod", "workload" or "selector"
    text: str  # as the user wrote it, for reports
    namespace: str | None = None  # a glob for "pod"; None for "selector" means every namespace
    name: str | None = None  # a glob for "pod", the workload's name for "workload"
    workload_kind: str | None = None  # None: any kind of workload
    selector: LabelSelector | None = None

    def matches(self, pod: Pod) -> bool:
        if self.kind == "pod":
            return (fnmatch.fnmatchcase(pod.namespace, self.namespace or "")
                    and fnmatch.fnmatchcase(pod.name, self.name or ""))
        if self.kind == "workload":
            if pod.namespace != self.namespace:
                return False
            owners = {pod.workload or ""}
            if pod.owner is not None:
                owners.add(f"{pod.owner.kind}/{pod.owner.name}")
            return any(kind == (self.workload_kind or kind) and name == self.name
                       for kind, _, name in (o.partition("/") for o in owners))
        return ((self.namespace is None or pod.namespace == self.namespace)
                and (self.selector is None or self.selector.matches(pod.labels)))


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sends: pods, an external client's address, or a node."""

    pods: PodSet | None = None
    external: str | None = None
    node: str | None = None

    @property
    def text(self) -> str:
        if self.pods is not None:
            return self.pods.text
        return f"external:{self.external}" if self.external else f"node/{self.node}"


@dataclass(frozen=True, slots=True)
class IngressRequest:
    host: str
    path: str = "/"
    scheme: str = "http"
    method: str = "GET"

    def __str__(self) -> str:
        return f"{self.method} {self.scheme}://{self.host}{self.path}"


@dataclass(frozen=True, slots=True)
class Target:
    """Where to: a Service, pods, an Ingress host and path, an address, or a node."""

    kind: str  # "service", "pods", "ingress", "address", "name" or "node"
    port: int | str | None = None
    service: str | None = None  # NS/NAME
    pods: PodSet | None = None
    ingress: IngressRequest | None = None
    address: str | None = None
    node: str | None = None

    @property
    def text(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        if self.kind == "service":
            return f"svc/{self.service}{port}"
        if self.kind == "pods":
            return f"{self.pods.text}{port}"
        if self.kind == "ingress":
            return f"{self.ingress.scheme}://{self.ingress.host}{self.ingress.path}"
        if self.kind == "address":
            host = f"[{self.address}]" if ":" in self.address else self.address
            return f"{host}{port}"
        if self.kind == "name":
            return f"{self.address}{port}"
        return f"node/{self.node}{port}"


@dataclass(frozen=True, slots=True)
class Expectation:
    """One assertion as written; `field` is its path for messages (spec.expectations[3])."""

    name: str
    index: int
    source: Source
    field: str
    origin: Origin
    target: Target
    expect: str
    protocol: str | None = None  # None: TCP, or the named Service port's protocol
    http: tuple[str, str] | None = None  # (METHOD, /path or URL)
    via: str | None = None
    delivered_to: PodSet | None = None
    client_ip_preserved: bool | None = None


@dataclass(frozen=True, slots=True)
class ExpectationSet:
    """One ConnectivityExpectations document."""

    file: str
    name: str
    source: Source
    expectations: tuple[Expectation, ...]


def load_expectations(paths: list[str]) -> tuple[ExpectationSet, ...]:
    """Every ConnectivityExpectations document of the files (directories: every YAML file)."""
    sets = []
    for path in paths:
        found = [parse_document(doc.data, doc.source) for doc in read_input(path)]
        if not found:
            raise InputError(f"holds no {KIND} document", source=Source(path))
        sets.extend(found)
    return tuple(sets)


def parse_document(data: dict, source: Source) -> ExpectationSet:
    f = Fields(data, source, None)
    if data.get("kind") != KIND:
        raise f.error("kind", f"must be {KIND}, got {data.get('kind')!r}")
    if data.get("apiVersion") != API_VERSION:
        raise f.error("apiVersion", f"must be {API_VERSION}, got {data.get('apiVersion')!r}")
    name = f.sub("metadata").str("name") or _stem(source.file)
    f.obj = f"{KIND} {name}"
    _known(f, ("apiVersion", "kind", "metadata", "spec"))
    spec = f.sub("spec")
    _known(spec, ("expectations",))
    items = list(spec.items("expectations", required=True))
    if not items:
        raise spec.error("expectations", "must list at least one expectation")
    expectations, seen = [], set()
    for i, item in enumerate(items):
        e = parse_expectation(item, i, f.obj)
        if e.name in seen:
            raise item.error("name", f"duplicate expectation name {e.name!r}")
        seen.add(e.name)
        expectations.append(e)
    return ExpectationSet(source.file, name, source, tuple(expectations))


def parse_expectation(f: Fields, index: int, doc: str) -> Expectation:
    name = f.str("name", required=True)
    if not name.strip():
        raise f.error("name", "must not be empty")
    f.obj = f"{doc}, expectation {name!r}"
    _known(f, EXPECTATION_KEYS)
    origin = _origin(_required_sub(f, "from"))
    target = _target(_required_sub(f, "to"))
    expect = f.enum("expect", EXPECTS, required=True)
    protocol = f.str("protocol")
    if protocol is not None:
        if protocol.upper() not in PROTOCOLS:
            raise f.error("protocol", f"must be one of {', '.join(PROTOCOLS)}, got "
                          f"{protocol!r}")
        protocol = protocol.upper()
    http = _http(f, target, protocol)
    via = f.str("via")
    if via is not None and not via.strip():
        raise f.error("via", "must not be empty")
    delivered = f.opt_sub("deliveredTo")
    delivered_to = _pod_set(delivered, POD_KEYS) if delivered is not None else None
    preserved = f.bool("clientIPPreserved", default=None)
    for key, value in (("deliveredTo", delivered_to), ("clientIPPreserved", preserved)):
        if value is not None and expect != "allow":
            raise f.error(key, "only checks delivered paths: needs expect: allow")
    return Expectation(name, index, f.source, f.path, origin, target, expect, protocol, http,
                       via and via.strip(), delivered_to, preserved)


# ---------------------------------------------------------------- from, to


def _origin(f: Fields) -> Origin:
    _known(f, FROM_KEYS)
    given = _one_of(f, FROM_KEYS, "pod, workload, namespace/selector, external or node")
    if given == "external":
        ip = f.ip("external", required=True)
        return Origin(external=ip)
    if given == "node":
        return Origin(node=_name(f, "node"))
    return Origin(pods=_pod_set(f, FROM_KEYS))


def _target(f: Fields) -> Target:
    _known(f, TO_KEYS)
    given = _one_of(f, tuple(k for k in TO_KEYS if k != "port"),
                    "service, pod, workload, namespace/selector, ingress, address, name or node")
    port = f.int_or_str("port")
    if given == "service":
        return Target("service", port, service="/".join(_ns_name(f, "service", glob=False)))
    if given == "ingress":
        if port is not None:
            raise f.error("port", "an ingress request goes to the controller's port for "
                          "its scheme: leave port out")
        return Target("ingress", ingress=_ingress(f.sub("ingress")))
    if given == "address":
        address, port = _address(f, port)
        return Target("address", port, address=address)
    if port is None:
        raise f.error("port", "required field is missing")
    if given == "name":  # a DNS name, resolved from each sender as its resolver would
        if not isinstance(port, int):
            raise f.error("port", f"must be a number for a name, got {port!r}")
        name = f.str("name", required=True)
        if not name or "/" in name or " " in name:
            raise f.error("name", f"must be a DNS name, got {name!r}")
        return Target("name", port, address=name)
    if given == "node":
        if not isinstance(port, int):
            raise f.error("port", f"must be a number for a node, got {port!r}")
        return Target("node", port, node=_name(f, "node"))
    return Target("pods", port, pods=_pod_set(f, TO_KEYS))


def _pod_set(f: Fields, allowed: tuple[str, ...]) -> PodSet:
    given = [k for k in POD_KEYS if f.has(k)]
    if not given:
        raise f.error(None, "names no pods: give pod, workload or namespace/selector")
    if given[0] in ("pod", "workload") and len(given) > 1:
        raise f.error(given[1], f"cannot be combined with {given[0]}")
    _known(f, allowed)
    if given[0] == "pod":
        ns, name = _ns_name(f, "pod", glob=True)
        return PodSet("pod", f"{ns}/{name}", namespace=ns, name=name)
    if given[0] == "workload":
        text = f.str("workload")
        parts = text.split("/")
        kind = parts.pop(0) if len(parts) == 3 else None
        if len(parts) != 2 or not all(parts):
            raise f.error("workload", f"must be [KIND/]NAMESPACE/NAME, got {text!r}")
        if kind is not None and kind not in WORKLOAD_KINDS:
            raise f.error("workload", f"kind must be one of {', '.join(WORKLOAD_KINDS)}, got "
                          f"{kind!r}")
        return PodSet("workload", text, namespace=parts[0], name=parts[1], workload_kind=kind)
    namespace = _name(f, "namespace") if f.has("namespace") else None
    selector = None
    if f.has("selector"):
        sel = f.sub("selector")
        if set(sel.data) & {"matchLabels", "matchExpressions"}:
            _known(sel, ("matchLabels", "matchExpressions"))
            selector = parse_selector(sel)
        else:
            selector = LabelSelector(match_labels=f.labels("selector"))
    text = f"namespace {namespace}" if namespace else "every namespace"
    if selector is not None:
        text += f", selector {selector}"
    return PodSet("selector", text, namespace=namespace, selector=selector)


def _ingress(f: Fields) -> IngressRequest:
    _known(f, INGRESS_KEYS)
    host = f.str("host", required=True)
    if not host or "/" in host or " " in host:
        raise f.error("host", f"must be a host name, got {host!r}")
    path = f.str("path", default="/")
    if not path.startswith("/"):
        raise f.error("path", f"must start with /, got {path!r}")
    scheme = f.enum("scheme", ("http", "https"), default="http")
    method = f.str("method", default="GET").upper()
    if method not in HTTP_METHODS:
        raise f.error("method", f"unknown HTTP method {method!r}")
    return IngressRequest(host, path, scheme, method)


def _address(f: Fields, port: int | str | None) -> tuple[str, int]:
    text = f.str("address")
    body, given = text, None
    if text.startswith("["):
        body, _, rest = text[1:].partition("]")
        given = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        body, _, given = text.partition(":")
    address = f.check_ip("address", body)
    if given is not None:
        if port is not None:
            raise f.error("port", f"the address already gives port {given}")
        if not given.isdigit() or not 1 <= int(given) <= 65535:
            raise f.error("address", f"port must be a number 1-65535, got {given!r}")
        port = int(given)
    if port is None:
        raise f.error("address", f"needs a port: {text}:PORT, or port: N")
    if not isinstance(port, int):
        raise f.error("port", f"must be a number for an address, got {port!r}")
    return address, port


def _http(f: Fields, target: Target, protocol: str | None) -> tuple[str, str] | None:
    text = f.str("http")
    if text is None:
        return None
    if target.kind == "ingress":
        raise f.error("http", "to.ingress gives the request (host, path, scheme, method)")
    if protocol not in (None, "TCP"):
        raise f.error("http", f"HTTP needs protocol TCP, not {protocol}")
    parts = text.split()
    if not parts or len(parts) > 2:
        raise f.error("http", f"must be 'METHOD /path' or 'METHOD http://host/path', got "
                      f"{text!r}")
    method = parts[0].upper() if len(parts) == 2 else "GET"
    if method not in HTTP_METHODS:
        raise f.error("http", f"unknown HTTP method {parts[0]!r}")
    target_text = parts[-1]
    if not target_text.startswith("/"):
        try:
            parse_http(f"{method} {target_text}")
        except InputError as exc:
            raise f.error("http", exc.message) from None
    return method, target_text


# ---------------------------------------------------------------- small readers


def _required_sub(f: Fields, key: str) -> Fields:
    if f.data.get(key) is None:
        raise f.error(key, "required field is missing")
    return f.sub(key)


def _one_of(f: Fields, keys: tuple[str, ...], what: str) -> str:
    """The one kind of end given (namespace and selector together are one kind)."""
    groups: dict[str, str] = {}
    for key in keys:
        if f.has(key):
            groups.setdefault("selector" if key in ("namespace", "selector") else key, key)
    if not groups:
        raise f.error(None, f"must give one of {what}")
    first, *others = groups
    if others:
        raise f.error(groups[others[0]], f"cannot be combined with {groups[first]}: give one "
                      f"of {what}")
    return first


def _known(f: Fields, keys: tuple[str, ...]) -> None:
    for key in f.data:
        if key not in keys:
            raise f.error(str(key), f"unknown field (known: {', '.join(keys)})")


def _name(f: Fields, key: str) -> str:
    value = f.str(key, required=True)
    if not value or "/" in value or " " in value:
        raise f.error(key, f"must be a name, got {value!r}")
    return value


def _ns_name(f: Fields, key: str, *, glob: bool) -> tuple[str, str]:
    value = f.str(key, required=True)
    ns, sep, name = value.partition("/")
    if not sep or not ns or not name or "/" in name or " " in value:
        what = "NAMESPACE/POD (globs allowed: shop/web-*)" if glob else "NAMESPACE/NAME"
        raise f.error(key, f"must be {what}, got {value!r}")
    if not glob and any(c in value for c in "*?["):
        raise f.error(key, f"names one object: no patterns, got {value!r}")
    return ns, name


def _stem(file: str) -> str:
    name = file.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name

