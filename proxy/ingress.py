"""The emulated ingress controller: how an ingress-nginx-like controller answers one request."""

from __future__ import annotations

from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.model import Ingress
from proxy.ingress_backend import Backend, resolve
from proxy.ingress_classes import NO_CLASS, ClassChoice, class_of, ingress_class, known_classes
from proxy.ingress_constants import (
    CANARY,
    FORCE_SSL_REDIRECT,
    HTTP_PORT,
    HTTPS_PORT,
    SSL_REDIRECT,
    SSL_REDIRECT_CODE,
)
from proxy.ingress_controllers import Controller, controller_for, controllers
from proxy.ingress_match import (
    CATCH_ALL,
    Choice,
    PathRule,
    host_matches,
    nginx_choice,
    spec_choice,
)

__all__ = ["Controller", "IngressRoute", "controller_for", "controllers", "forwarded_headers",
           "route", "served_ingresses"]

SCHEMES = ("http", "https")
NOT_FOUND = 404

# Where --nginx-compat departs from the specification (each is documented where it happens).
NGINX_DIFFERENCES = (
    "Prefix /foo/ does not match /foo: nginx answers 301 to /foo/ (location /foo/ with "
    "proxy_pass)",
    "ImplementationSpecific is an nginx string prefix: /foo matches /foobar",
    "use-regex or rewrite-target on any Ingress of a host makes every path of that host a "
    "case-insensitive regex, first match in longest-first order",
    "*.foo.com matches any number of labels (nginx server_name), not exactly one",
    "a host with rules but no matching path goes to the default backend; it never falls "
    "back to wildcard or host-less rules",
    "the catch-all's defaultBackend is the newest Ingress's; a host's is that of the oldest "
    "Ingress with a rule for it",
    "resource backends get no location (the default backend answers)",
    "a backend port also matches a Service port's targetPort",
    "plain HTTP to a host with TLS is redirected 308 to HTTPS (ssl-redirect)",
    "canary Ingresses are left out (ingress-nginx merges them as weighted alternatives)",
    "TLS comes only from Ingresses with a rule for the host",
)


@dataclass(frozen=True, slots=True)
class IngressRoute:
    """The controller's answer to one request, and why."""

    status: int  # 200, 404, 503; with nginx_compat also 301 and 308
    ingress: str | None  # "ns/name"
    rule: dict | None  # {"host": ..., "path": ..., "pathType": ...}
    backend: dict | None  # {"service", "port", "portName"} or {"resource": "Kind/name"}
    endpoints: tuple[str, ...]  # every ready endpoint the controller balances this request over
    tls_secret: str | None  # "ns/name"
    reason: str
    controller: str | None  # the controller (IngressClass spec.controller) that served it
    ingress_class: str | None = None
    redirect: str | None = None  # the Location of a 301/308
    nginx_compat: bool = False

    def to_json(self) -> dict:
        """The issue's JSON shape, keys in its order."""
        return {"status": self.status, "ingress": self.ingress, "rule": self.rule,
                "backend": self.backend, "endpoints": list(self.endpoints),
                "tlsSecret": self.tls_secret}


def forwarded_headers(client_ip: str, host: str, scheme: str) -> tuple[tuple[str, str], ...]:
    """The headers ingress-nginx sets on the proxied request (nginx.tmpl, location block).

    X-Forwarded-For is replaced by the client address (use-forwarded-headers is off by
    default), Host is kept, X-Request-ID (random per request) is left out.
    """
    port = str(HTTPS_PORT if scheme == "https" else HTTP_PORT)
    return (("Host", host), ("X-Real-IP", client_ip), ("X-Forwarded-For", client_ip),
            ("X-Forwarded-Host", host), ("X-Forwarded-Port", port),
            ("X-Forwarded-Proto", scheme), ("X-Scheme", scheme))


def served_ingresses(cluster: Cluster, ingress_class_name: str | None = None,
                     nginx_compat: bool = False) -> tuple[tuple[Ingress, ClassChoice], ...]:
    """The Ingresses the controller merges, oldest first then by namespace/name (ingress-nginx
    store.go sortIngressSlice), with the class each belongs to.

    Without a class every Ingress counts. With one, its Ingresses count, plus class-less ones
    when the controller of that class watches Ingresses without a class.
    """
    watcher = None
    if ingress_class_name is not None:
        ctrls = controllers(cluster)
        watcher = next((c for c in ctrls if c.ingress_class == ingress_class_name), None)
        known = known_classes(cluster)
        if ingress_class_name not in known and watcher is None:
            raise InputError(f"no IngressClass {ingress_class_name!r} (known: "
                             f"{', '.join(known) or 'none'})", obj="request",
                             field="ingress class")
    out = []
    for ing in sorted(cluster.ingresses,
                      key=lambda i: (i.meta.created or "", i.namespace, i.name)):
        choice = class_of(cluster, ing)
        if nginx_compat and ing.meta.annotations.get(CANARY) == "true":
            continue
        if ingress_class_name is None or choice.name == ingress_class_name or (
                choice.source == NO_CLASS and watcher is not None
                and watcher.watch_without_class):
            out.append((ing, choice))
    return tuple(out)


def route(cluster: Cluster, host: str, path: str, scheme: str = "http",
          ingress_class: str | None = None, nginx_compat: bool = False) -> IngressRoute:
    """Answer `scheme://host/path` as the controller would.

    By default matching follows the Ingress v1 specification; `nginx_compat` gives
    ingress-nginx's behaviour where it differs (NGINX_DIFFERENCES). Raises InputError for a
    malformed request or an unknown class.
    """
    host_header, host, uri, query = _request(host, path, scheme)
    served = served_ingresses(cluster, ingress_class, nginx_compat)
    rules = [PathRule(ing, r.host, p, order) for order, (ing, _) in enumerate(served)
             for r in ing.rules for p in r.paths]
    choice = (nginx_choice if nginx_compat else spec_choice)(rules, host, uri)
    classes = {ing.key: c for ing, c in served}
    tls, tls_why = _tls(cluster, served, choice, host, scheme, nginx_compat)
    answer = _Answer(cluster, classes, ingress_class, tls, nginx_compat)
    if choice.redirect:
        code, location = choice.redirect
        # nginx builds this Location from $host: no port (port_in_redirect off), lower case.
        return answer.redirect(code, f"{scheme}://{host}{location}{query}", choice,
                               choice.why + tls_why)
    if nginx_compat and scheme == "http":
        owner = choice.rule.ingress if choice.rule else _creator(choice)
        if owner is not None and _ssl_redirect(owner, served, choice):
            return answer.redirect(SSL_REDIRECT_CODE, f"https://{host_header}{uri}{query}",
                                   choice, choice.why + f"; ssl-redirect of {owner.key}: "
                                   "the host has TLS")
    if choice.rule is not None:
        ing = choice.rule.ingress
        result = resolve(cluster, ing.namespace, choice.rule.path.backend,
                         nginx_compat=nginx_compat, annotations=ing.meta.annotations)
        return answer.routed(ing, choice.rule, result, f"{choice.why}; {result.why}{tls_why}")
    default = _default_backend(choice, served, nginx_compat)
    if default is not None and default.default_backend is not None:
        result = resolve(cluster, default.namespace, default.default_backend,
                         nginx_compat=nginx_compat, annotations=default.meta.annotations)
        return answer.routed(default, None, result, f"{choice.why}; defaultBackend of "
                             f"{default.key}: {result.why}{tls_why}")
    why = (f"{choice.why}; no defaultBackend: " + ("ingress-nginx's own default backend "
           "answers 404" if nginx_compat else "the controller answers 404"))
    if not served:
        why = "no Ingress is served" + (f" for class {ingress_class!r}" if ingress_class else "")
        why += ": the controller answers 404"
    return answer.not_found(why + tls_why)


@dataclass(frozen=True, slots=True)
class _Answer:
    """Builds IngressRoutes that share the request's TLS secret, mode and class lookup."""

    cluster: Cluster
    classes: dict
    asked_class: str | None
    tls: str | None
    nginx_compat: bool

    def _controller(self, ing: Ingress | None) -> tuple[str | None, str | None]:
        choice = self.classes.get(ing.key) if ing is not None else None
        if choice is None:
            if self.asked_class is None:
                return None, None
            choice = ClassChoice(self.asked_class, "the requested class")
        obj = ingress_class(self.cluster, choice.name)
        if obj is not None:
            return obj.controller, choice.name
        ctrl = controller_for(self.cluster, choice)
        return (ctrl.controller if ctrl else None), choice.name

    def routed(self, ing: Ingress, rule: PathRule | None, result: Backend,
               why: str) -> IngressRoute:
        controller, klass = self._controller(ing)
        return IngressRoute(result.status, ing.key, _rule_json(rule), result.json,
                            result.endpoints, self.tls, why, controller, klass,
                            nginx_compat=self.nginx_compat)

    def redirect(self, code: int, location: str, choice: Choice, why: str) -> IngressRoute:
        ing = choice.rule.ingress if choice.rule else _creator(choice)
        controller, klass = self._controller(ing)
        return IngressRoute(code, ing.key if ing else None, _rule_json(choice.rule), None, (),
                            self.tls, f"{why}; {code} to {location}", controller, klass,
                            redirect=location, nginx_compat=self.nginx_compat)

    def not_found(self, why: str) -> IngressRoute:
        controller, klass = self._controller(None)
        return IngressRoute(NOT_FOUND, None, None, None, (), self.tls, why, controller, klass,
                            nginx_compat=self.nginx_compat)


def _request(host: str, path: str, scheme: str) -> tuple[str, str, str, str]:
    """(Host header, host to match, path to match, ?query) from the request's parts.

    The path is matched without query and fragment (HTTPIngressRuleValue: everything before
    the first '?' or '#'); the host without port, lower-cased, without a final dot.
    """
    if scheme not in SCHEMES:
        raise InputError(f"must be http or https, got {scheme!r}", obj="request",
                         field="scheme")
    if not path.startswith("/"):
        raise InputError(f"must start with '/', got {path!r}", obj="request", field="path")
    header = host.strip()
    if any(ch.isspace() or ch in "/?#@" for ch in header):
        raise InputError(f"must be a host name or address, got {host!r}", obj="request",
                         field="host")
    name = header
    if name.startswith("["):  # [v6]:port
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    uri, _, rest = path.partition("#")[0].partition("?")
    return header, name.lower().rstrip("."), uri, (f"?{rest}" if rest else "")


def _rule_json(rule: PathRule | None) -> dict | None:
    if rule is None:
        return None
    return {"host": rule.host, "path": rule.path.path, "pathType": rule.path.path_type}


def _creator(choice: Choice) -> Ingress | None:
    """The oldest Ingress with a rule for the chosen host: it made nginx's server block."""
    return min(choice.group, key=lambda r: r.order).ingress if choice.group else None


def _default_backend(choice: Choice, served: tuple, nginx_compat: bool) -> Ingress | None:
    """The Ingress whose defaultBackend takes a request no path matched.

    Specification: requests matching no rule go to the defaultBackend; with several Ingresses
    netsim takes the oldest one with rules for the host, else the oldest with one at all.
    ingress-nginx (controller.go createServers): a host's server uses the defaultBackend of
    the Ingress that created it; the catch-all server takes each Ingress's in turn, so the
    newest wins. Its resource defaultBackends are ignored.
    """
    with_default = [ing for ing, _ in served if ing.default_backend is not None]
    if not nginx_compat:
        group = {r.ingress.key for r in choice.group}
        return next((i for i in with_default if i.key in group),
                    with_default[0] if with_default else None)
    if choice.server not in (None, CATCH_ALL):
        creator = _creator(choice)
        if creator and creator.default_backend and creator.default_backend.service_name:
            return creator
        return None
    services = [i for i in with_default if i.default_backend.service_name]
    return services[-1] if services else None


def _ssl_redirect(owner: Ingress, served: tuple, choice: Choice) -> bool:
    """ingress-nginx redirects HTTP to HTTPS when forced, or when the server has TLS and the
    location's Ingress leaves ssl-redirect on (the ConfigMap default)."""
    annotations = owner.meta.annotations
    if annotations.get(FORCE_SSL_REDIRECT) == "true":
        return True
    return _nginx_server_tls(served, choice) is not None and \
        annotations.get(SSL_REDIRECT, "true") != "false"


def _nginx_server_tls(served: tuple, choice: Choice):
    """The TLS entry ingress-nginx gives a server: from the Ingresses with a rule for its host,
    an entry listing the host (or, standing in for its certificate SAN check, a wildcard
    covering it)."""
    if choice.server in (None, CATCH_ALL):
        return None
    owners = {r.ingress.key for r in choice.group}
    for ing, _ in served:
        if ing.key not in owners:
            continue
        for entry in ing.tls:
            if any(h.lower() == choice.server or (h.startswith("*.")
                   and host_matches(h, choice.server)) for h in entry.hosts):
                return ing, entry
    return None


def _spec_tls(served: tuple, host: str):
    """The TLS entry for an SNI host: one listing it, then a wildcard covering it, then one
    without hosts (which applies to every host), oldest Ingress first."""
    for test in (lambda h: h == host, lambda h: h.startswith("*.") and host_matches(h, host)):
        for ing, _ in served:
            for entry in ing.tls:
                if any(test(h) for h in entry.hosts):
                    return ing, entry
    return next(((ing, e) for ing, _ in served for e in ing.tls if not e.hosts), None)


def _tls(cluster: Cluster, served: tuple, choice: Choice, host: str, scheme: str,
         nginx_compat: bool) -> tuple[str | None, str]:
    """The Secret that terminates TLS for this SNI host (taken to be the Host), and a note."""
    if scheme != "https":
        return None, ""
    found = _nginx_server_tls(served, choice) if nginx_compat else _spec_tls(served, host)
    if found is None:
        return None, (f"; no TLS entry covers SNI {host}: the controller presents its "
                      "default (self-signed) certificate")
    ing, entry = found
    if not entry.secret_name:
        return None, (f"; TLS for {host} in {ing.key} names no Secret: the controller's "
                      "default certificate")
    key = f"{ing.namespace}/{entry.secret_name}"
    secrets = {s.meta.namespace and f"{s.meta.namespace}/{s.name}" for s in cluster.raw("Secret")}
    missing = "" if key in secrets else (" (the Secret is not in the input: without it the "
                                         "controller presents its default certificate)")
    return key, f"; TLS terminated with Secret {key} from {ing.key} (SNI {host}){missing}"
