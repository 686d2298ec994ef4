"""Cilium's HTTP policy (rules.http) applied to one request, as the L7 proxy enforces it.

From pkg/policy/api/http.go and Cilium's Envoy filter: a request is allowed when at least
one rule matches it; a rule matches when every field it sets matches. method, path and host
are extended POSIX regular expressions matched against the whole value; `headers` entries
are "Name" (the header must be present) or "Name: value" (exact value); headerMatches with
a `mismatch` action only log or rewrite, they never deny. A denied request is answered by
the proxy with 403 "Access denied"; it is not a packet drop (docs.cilium.io
security/policy/language "Layer 7 Examples", getting-started demo).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from policies.cilium import HTTPRule

ACCESS_DENIED = "Access denied"
DENIED_STATUS = 403


@dataclass(frozen=True, slots=True)
class HttpVerdict:
    allowed: bool
    status: int | None  # 403 when the proxy answers itself; None when forwarded
    body: str | None
    rule: HTTPRule | None  # the first rule that allowed the request
    reason: str


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _full(pattern: str | None, value: str) -> bool:
    return pattern is None or _regex(pattern).fullmatch(value) is not None


def rule_matches(rule: HTTPRule, method: str, path: str, host: str,
                 headers: Mapping[str, str]) -> bool:
    """Whether one HTTP rule matches a request (header names compare case-insensitively)."""
    if not (_full(rule.method, method) and _full(rule.path, path) and _full(rule.host, host)):
        return False
    lowered = {k.lower(): v for k, v in headers.items()}
    for h in rule.headers:
        name, sep, value = h.partition(":")
        have = lowered.get(name.strip().lower())
        if have is None or (sep and have != value.strip()):
            return False
    for m in rule.header_matches:
        have = lowered.get(m.name.lower())
        ok = have is not None and (m.value is None or have == m.value)
        if not ok and m.mismatch is None:
            return False
    return True


def evaluate_http(rules: tuple[HTTPRule, ...], method: str, path: str, host: str = "",
                  headers: Mapping[str, str] | None = None) -> HttpVerdict:
    """The proxy's answer to one request under the HTTP rules of the matched policy entry."""
    headers = headers or {}
    for rule in rules:
        if rule_matches(rule, method, path, host, headers):
            return HttpVerdict(True, None, None, rule, f"allowed by HTTP rule {rule}")
    wanted = ", ".join(str(r) for r in rules) or "no HTTP rule"
    return HttpVerdict(False, DENIED_STATUS, ACCESS_DENIED, None,
                       f"{method} {path} matches none of: {wanted}")
