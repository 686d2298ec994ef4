"""`netsim ingress`: how the emulated ingress controller answers a request, and what it serves."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from netsim.errors import InputError

ENDPOINTS_SHOWN = 3  # kubectl describe ingress lists a few endpoints, then "+ N more..."
REQUEST_FIELDS = {"host": "--host", "path": "--path", "scheme": "--scheme",
                  "ingress class": "--ingress-class"}


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    from proxy.ingress import NGINX_DIFFERENCES

    ingress = sub.add_parser("ingress", help="the emulated ingress controller: answer one "
                             "request, or list controllers, classes and rules")
    verbs = ingress.add_subparsers(dest="ingress_command", required=True, metavar="VERB")
    r = verbs.add_parser(
        "route", parents=[cluster], help="how the controller answers one request",
        description="Answer one HTTP(S) request as an ingress-nginx-like controller would: "
        "status, Ingress, rule, backend, the endpoints it proxies to, TLS Secret. Matching "
        "follows the Ingress v1 specification unless --nginx-compat. Exit status: 0 for "
        "2xx/3xx, 1 otherwise.", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="--nginx-compat departs from the specification where ingress-nginx does:\n"
        + "".join(f"  - {d}\n" for d in NGINX_DIFFERENCES))
    r.add_argument("--host", required=True, help="the Host header (and TLS SNI)")
    r.add_argument("--path", default="/", help="the request path (default /)")
    r.add_argument("--scheme", choices=("http", "https"), default="http")
    r.add_argument("--ingress-class", metavar="NAME", help="only Ingresses of this class "
                   "(default: every Ingress counts as served)")
    r.add_argument("--nginx-compat", action="store_true", help="ingress-nginx's behaviour "
                   "where it departs from the specification (listed below)")
    r.add_argument("-o", "--output", choices=("text", "json"), default="text")
    r.set_defaults(func=cmd_route)
    ls = verbs.add_parser("list", parents=[cluster], help="controllers, IngressClasses and "
                          "each Ingress's rules, kubectl describe style")
    ls.set_defaults(func=cmd_list)


def cmd_route(args: argparse.Namespace) -> int:
    from netsim.cli import load_cluster
    from proxy.ingress import route

    cluster = load_cluster(args)
    try:
        answer = route(cluster, args.host, args.path, args.scheme, args.ingress_class,
                       args.nginx_compat)
    except InputError as exc:
        if exc.obj != "request":
            raise
        raise InputError(exc.message, obj="command line",
                         field=REQUEST_FIELDS.get(exc.field or "", exc.field)) from None
    if args.output == "json":
        print(json.dumps(answer.to_json()))
    else:
        sys.stdout.write(_route_text(cluster, args, answer))
    return 0 if answer.status < 400 else 1


def _route_text(cluster: Any, args: argparse.Namespace, answer: Any) -> str:
    from proxy.ingress import controller_for, forwarded_headers
    from proxy.ingress_classes import BY_FIELD, ClassChoice, class_of

    mode = ("ingress-nginx's behaviour: --nginx-compat" if answer.nginx_compat
            else "the Ingress v1 specification")
    lines = [("request", f"GET {args.scheme}://{args.host}{args.path}  ({mode})"),
             ("status", str(answer.status))]
    if answer.ingress:
        klass = f"class {answer.ingress_class}" if answer.ingress_class else "no class"
        lines.append(("ingress", f"{answer.ingress}  ({klass}"
                      + (f", {answer.controller})" if answer.controller else ")")))
    if answer.rule:
        rule = answer.rule
        lines.append(("rule", f"host {rule['host'] or '*'}  path {rule['path'] or '(any)'}  "
                      f"{rule['pathType']}"))
    elif answer.ingress and not answer.redirect:
        lines.append(("rule", "none: the Ingress's defaultBackend"))
    if answer.redirect:
        lines.append(("location", answer.redirect))
    if answer.backend:
        lines.append(("backend", _backend_text(answer.backend)))
    if answer.endpoints:
        lines.append(("endpoints", ", ".join(answer.endpoints)))
    if args.scheme == "https":
        lines.append(("tls", f"Secret {answer.tls_secret}" if answer.tls_secret
                      else "the controller's default certificate"))
    ing = next((i for i in cluster.ingresses if i.key == answer.ingress), None)
    if ing is not None:
        choice = class_of(cluster, ing)
    else:
        choice = ClassChoice(args.ingress_class, BY_FIELD) if args.ingress_class else None
    ctrl = controller_for(cluster, choice) if choice is not None else None
    if ctrl is not None:
        lines.append(("controller", _controller_text(ctrl)))
    if answer.status < 300:
        headers = forwarded_headers("<client>", args.host, args.scheme)
        lines.append(("adds", ", ".join(f"{k}: {v}" for k, v in headers if k != "Host")))
    for i, part in enumerate(answer.reason.split("; ")):
        lines.append(("why" if i == 0 else "", part))
    width = max(len(k) for k, _ in lines) + 2
    return "".join(f"{(k + ':') if k else '':<{width}}{v}\n" for k, v in lines)


def _backend_text(backend: dict) -> str:
    if "resource" in backend:
        return f"resource {backend['resource']}"
    port = backend["port"] if backend["port"] is not None else "?"
    named = f" (the Ingress names it {backend['portName']!r})" if backend["portName"] else ""
    return f"Service {backend['service']} port {port}{named}"


def _controller_text(ctrl: Any) -> str:
    where = ", ".join(ctrl.pods) or "no ready pod"
    front = f" behind {ctrl.service_type} Service {ctrl.service}" if ctrl.service else ""
    if ctrl.load_balancer_ips:
        front += f" ({', '.join(ctrl.load_balancer_ips)})"
    return ("emulated: " if ctrl.emulated else "") + where + front


# ---------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace) -> int:
    from netsim.cli import load_cluster
    from netsim.views import Table, render
    from proxy.ingress import controllers
    from proxy.ingress_classes import class_of

    cluster = load_cluster(args)
    out = []
    ctrls = controllers(cluster)
    if ctrls:
        rows = tuple((c.ingress_class, c.controller, str(c.is_default_class).lower(),
                      c.namespace, str(len(c.pods)), c.service or "<none>",
                      (c.service_type or "<none>") + (" (emulated)" if c.emulated else ""),
                      ",".join(c.load_balancer_ips) or "<none>", _ports(c)) for c in ctrls)
        notes = "".join(f"  note: {c.note}\n" for c in ctrls if c.emulated)
        out.append("Controllers:\n" + _indent(render(Table(
            ("CLASS", "CONTROLLER", "DEFAULT", "NAMESPACE", "PODS", "SERVICE", "TYPE",
             "EXTERNAL-IP", "PORT(S)"), rows))) + notes)
    else:
        out.append("Controllers: none (the cluster has no Ingress)")
    if cluster.ingress_classes:
        rows = tuple((c.name, c.controller, str(c.is_default).lower())
                     for c in cluster.ingress_classes)
        out.append("IngressClasses:\n" + _indent(render(Table(
            ("NAME", "CONTROLLER", "DEFAULT"), rows))))
    for ing in cluster.ingresses:
        out.append(_describe(cluster, ing, class_of(cluster, ing)))
    sys.stdout.write("\n\n".join(o.rstrip("\n") for o in out) + "\n")
    return 0


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def _ports(c: Any) -> str:
    parts = []
    for port, node_port in ((c.http_port, c.http_node_port), (c.https_port, c.https_node_port)):
        parts.append(f"{port}:{node_port}/TCP" if node_port else f"{port}/TCP")
    return ",".join(parts)


def _describe(cluster: Any, ing: Any, choice: Any) -> str:
    """One Ingress as `kubectl describe ingress` lays it out, with path types and the ready
    endpoints netsim resolves for each backend."""
    from netsim.views import Table, render
    from proxy.ingress_backend import describe

    lines = [f"Name:             {ing.name}", f"Namespace:        {ing.namespace}",
             f"Ingress Class:    {choice}",
             "Default backend:  " + (f"{describe(ing.default_backend)} "
                                     f"{_endpoints(cluster, ing, ing.default_backend)}"
                                     if ing.default_backend else "<default>")]
    if ing.tls:
        lines.append("TLS:")
        lines += [f"  {t.secret_name or 'SNI routes'} terminates {','.join(t.hosts) or '*'}"
                  for t in ing.tls]
    heads = ("Host", "Path", "Type", "Backends")
    rows = [tuple("-" * len(h) for h in heads)]
    for rule in ing.rules:
        rows.append((rule.host or "*", "", "", ""))
        for p in rule.paths:
            rows.append(("", p.path or "(any)", p.path_type,
                         f"{describe(p.backend)} {_endpoints(cluster, ing, p.backend)}"))
    if len(rows) > 1:
        lines.append("Rules:")
        lines += ["  " + line for line in render(Table(heads, tuple(rows))).splitlines()]
    return "\n".join(lines) + "\n"


def _endpoints(cluster: Any, ing: Any, backend: Any) -> str:
    from proxy.ingress_backend import resolve

    result = resolve(cluster, ing.namespace, backend, annotations=ing.meta.annotations)
    if backend.resource:
        return "(resource)"
    if not result.endpoints:
        return f"(<error: {result.why.removesuffix(': 503')}>)"
    shown = ",".join(result.endpoints[:ENDPOINTS_SHOWN])
    more = len(result.endpoints) - ENDPOINTS_SHOWN
    return f"({shown}{f' + {more} more...' if more > 0 else ''})"
