"""Which Ingress path answers a request: the Ingress v1 matching rules, and ingress-nginx's
nginx server and location choice for --nginx-compat."""

from __future__ import annotations

import re
from dataclasses import dataclass

from netsim.model import Ingress, IngressPath
from proxy.ingress_constants import (
    EXACT,
    PREFIX,
    REWRITE_TARGET,
    TRAILING_SLASH_REDIRECT_CODE,
    USE_REGEX,
)

CATCH_ALL = "_"  # the nginx server_name ingress-nginx gives rules without a host


@dataclass(frozen=True, slots=True)
class PathRule:
    """One path of one rule of one served Ingress; `order` is the merge order (oldest first)."""

    ingress: Ingress
    host: str | None
    path: IngressPath
    order: int

    @property
    def text(self) -> str:
        return self.path.path or "/"


@dataclass(frozen=True, slots=True)
class Choice:
    """The path that answers (or none), the host group it was looked up in, and why."""

    rule: PathRule | None
    group: tuple[PathRule, ...]  # the rules of the host (nginx: the server) that was chosen
    server: str | None  # nginx server name (CATCH_ALL for host-less rules); spec: matched host
    why: str
    redirect: tuple[int, str] | None = None  # (status, path) nginx answers itself


# ---------------------------------------------------------------- hosts


def host_matches(rule_host: str | None, host: str) -> bool:
    """Ingress v1 host matching: equal, or `*.foo.com` covering exactly one more label."""
    if rule_host is None:
        return True
    if rule_host.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == rule_host[2:]
    return rule_host == host


def nginx_host_matches(server_name: str, host: str) -> bool:
    """nginx server_name: `*.foo.com` matches any number of labels before .foo.com."""
    if server_name.startswith("*."):
        return host.endswith(server_name[1:]) and len(host) > len(server_name) - 1
    return server_name == host


# ---------------------------------------------------------------- paths (specification)


def _elements(path: str) -> list[str]:
    return [e for e in path.split("/") if e]


def path_matches(path_type: str, rule_path: str | None, request_path: str) -> bool:
    """The Ingress v1 path types; ImplementationSpecific is treated as Prefix (the API allows
    an implementation to treat it identically to Prefix or Exact)."""
    if path_type == EXACT:
        return request_path == rule_path
    rule = _elements(rule_path or "/")  # Prefix: element-wise, trailing slashes ignored
    return _elements(request_path)[: len(rule)] == rule


def spec_choice(rules: list[PathRule], host: str, path: str) -> Choice:
    """The most specific host group with a matching path, then the longest path, Exact first.

    Hosts are tried exact, then wildcard, then rules without a host (which match every host):
    a rule matches only when both its host and a path match, so a request whose host has rules
    but no matching path falls through to the less specific ones. Within a group the longest
    path wins and Exact beats Prefix on a tie (types.go PathTypePrefix, the docs' "Multiple
    matches"); a remaining tie goes to the oldest Ingress, as controllers merge them.
    """
    groups = (
        ("host " + host, [r for r in rules if r.host == host]),
        ("wildcard host", [r for r in rules if r.host and r.host.startswith("*.")
                           and host_matches(r.host, host)]),
        ("rules without a host", [r for r in rules if r.host is None]),
    )
    first_group: tuple[PathRule, ...] = ()
    first_label = None
    for label, group in groups:
        if not group:
            continue
        if not first_group:
            first_group, first_label = tuple(group), label
        found = [r for r in group if path_matches(r.path.path_type, r.path.path, path)]
        if found:
            best = min(found, key=lambda r: (-len(r.text), r.path.path_type != EXACT, r.order))
            why = f"{best.path.path_type} {best.text} is the longest match under {label}"
            if len(found) > 1:
                others = ", ".join(f"{r.path.path_type} {r.text}" for r in found if r is not best)
                why += f" (also matching: {others})"
            server = group[0].host if group[0].host else None
            return Choice(best, tuple(group), server, why)
    why = (f"no path of {first_label} matches {path}" if first_group
           else "no rule's host matches")
    server = first_group[0].host if first_group else None
    return Choice(None, first_group, server, why)


# ---------------------------------------------------------------- paths (ingress-nginx)


@dataclass(frozen=True, slots=True)
class Location:
    """An nginx location ingress-nginx writes: `= /foo`, `/foo/`, or `~* "^/foo"`."""

    kind: str  # "=", "prefix", "~*"
    path: str
    rule: PathRule | None  # None: the root location of the default backend

    def text(self) -> str:
        return {"=": f"= {self.path}", "prefix": self.path, "~*": f'~* "^{self.path}"'}[self.kind]


def nginx_choice(rules: list[PathRule], host: str, path: str) -> Choice:
    """ingress-nginx's answer: nginx picks a server by name, then a location inside it.

    Server: exact name, else the longest matching `*.` wildcard (any depth), else the
    catch-all `_` holding host-less rules; a server never falls back to another. Locations
    (controller.go getBackendServers, location.go updateServerLocations, template.go
    buildLocation): the first Ingress (oldest) wins a path+type; resource backends get no
    location; Prefix /foo becomes `/foo/` plus `= /foo`; Exact is `= path`;
    ImplementationSpecific is a plain nginx prefix; with use-regex or rewrite-target on any
    Ingress of the host every path becomes a case-insensitive `~* "^path"`, tried longest
    first, first match wins.
    """
    names = {r.host for r in rules if r.host}
    if host in names:
        server = host
    else:
        wild = sorted((n for n in names if n.startswith("*.") and nginx_host_matches(n, host)),
                      key=len, reverse=True)
        server = wild[0] if wild else CATCH_ALL
    group = tuple(r for r in rules if (r.host or CATCH_ALL) == server)
    located, skipped = [], []
    for r in group:
        if r.path.backend.resource:
            skipped.append(r)
        elif not any(o.text == r.text and o.path.path_type == r.path.path_type for o in located):
            located.append(r)
    why = f"server {server}" + (f" (resource backends get no location: "
                                f"{', '.join(r.text for r in skipped)})" if skipped else "")
    locations = _locations(located)
    regex = any(_needs_regex(r) for r in located)
    if regex:
        hit = _regex_lookup(locations, path)
        why += "; use-regex/rewrite-target: every path is a case-insensitive regex"
    else:
        exact = next((loc for loc in locations if loc.kind == "=" and loc.path == path), None)
        slash = next((loc for loc in locations if loc.kind == "prefix" and loc.rule
                      and loc.path == path + "/"), None)
        if exact is None and slash is not None:
            # nginx: a prefix location ending in "/" with proxy_pass answers its own name
            # without the slash with a 301 to the name with it.
            return Choice(slash.rule, group, server, why + f"; location {slash.path} "
                          f"redirects {path}", (TRAILING_SLASH_REDIRECT_CODE, path + "/"))
        prefixes = [loc for loc in locations if loc.kind == "prefix" and path.startswith(loc.path)]
        hit = exact or (max(prefixes, key=lambda loc: len(loc.path)) if prefixes else None)
    if hit is None or hit.rule is None:
        return Choice(None, group, server, why + f"; {path} reaches the default backend"
                      + (f" (location {hit.text()})" if hit else ""))
    return Choice(hit.rule, group, server, why + f"; location {hit.text()}")


def _needs_regex(r: PathRule) -> bool:
    annotations = r.ingress.meta.annotations
    target = annotations.get(REWRITE_TARGET)
    return annotations.get(USE_REGEX) == "true" or bool(target and target != r.text)


def _locations(located: list[PathRule]) -> list[Location]:
    """nginx locations in ingress-nginx's order (path descending, then longest first)."""
    regex = any(_needs_regex(r) for r in located)
    exact_paths = {r.text for r in located if r.path.path_type == EXACT}
    out: list[Location] = []
    for r in located:
        kind, text = r.path.path_type, r.text
        if regex:
            out.append(Location("~*", text, r))
        elif kind == EXACT:
            out.append(Location("=", text, r))
        elif kind == PREFIX and text != "/":
            out.append(Location("prefix", text if text.endswith("/") else text + "/", r))
            if text not in exact_paths:
                out.append(Location("=", text, r))
        else:  # Prefix "/" and ImplementationSpecific: the path as an nginx prefix
            out.append(Location("prefix", text, r))
    if not any(loc.path == "/" and loc.kind in ("prefix", "~*") for loc in out):
        out.append(Location("~*" if regex else "prefix", "/", None))
    out.sort(key=lambda loc: loc.path, reverse=True)
    out.sort(key=lambda loc: len(loc.path), reverse=True)
    return out


def _regex_lookup(locations: list[Location], path: str) -> Location | None:
    for loc in locations:
        try:
            if re.match(loc.path, path, re.IGNORECASE):
                return loc
        except re.error:  # PCRE syntax Python lacks: nginx would have refused the config
            continue
    return None
