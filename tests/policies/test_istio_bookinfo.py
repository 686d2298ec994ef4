"""Bookinfo and istio.io's "Authorization for HTTP traffic" task, step by step.

The manifests are istio/istio's samples/bookinfo/platform/kube/bookinfo.yaml and the task's
policies (shared/realworld/istio-bookinfo/authz-http-*.yaml, see its README). What the page
states after each step (istio.io content/en/docs/tasks/security/authorization/authz-http):

1. allow-nothing: the product page shows "RBAC: access denied".
2. + productpage-viewer (GET from anyone): the page loads, with "Error fetching product
   details" and "Error fetching product reviews".
3. + details-viewer and reviews-viewer (GET from the bookinfo-productpage principal): details
   and reviews show, but "Ratings service currently unavailable".
4. + ratings-viewer (GET from the bookinfo-reviews principal): ratings show.

Calls: the ingress gateway -> productpage GET /productpage; productpage -> details GET
/details/0 and -> reviews GET /reviews/0; reviews -> ratings GET /ratings/0; every workload
serves 9080 and, as the task requires, talks mTLS with its service account's identity.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.cluster import load
from policies.istio import AuthorizationPolicies, AuthzRequest, authorize, workload_principal

BOOKINFO = Path(__file__).resolve().parents[3] / "shared" / "realworld" / "istio-bookinfo"
pytestmark = pytest.mark.skipif(not BOOKINFO.is_dir(),
                                reason=f"{BOOKINFO} (shared real-world manifests) is absent")

GATEWAY = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
CALLS = {  # name: (caller principal or the pod it comes from, target app, path)
    "page": (GATEWAY, "productpage", "/productpage"),
    "details": ("productpage", "details", "/details/0"),
    "reviews": ("productpage", "reviews", "/reviews/0"),
    "ratings": ("reviews", "ratings", "/ratings/0"),
}
STEPS = [
    ("allow-nothing", ["allow-nothing"],
     {"page": False, "details": False, "reviews": False, "ratings": False}),
    ("productpage-viewer", ["allow-nothing", "productpage-viewer"],
     {"page": True, "details": False, "reviews": False, "ratings": False}),
    ("details and reviews viewers", ["allow-nothing", "productpage-viewer", "details-viewer",
                                     "reviews-viewer"],
     {"page": True, "details": True, "reviews": True, "ratings": False}),
    ("ratings-viewer", ["allow-nothing", "productpage-viewer", "details-viewer",
                        "reviews-viewer", "ratings-viewer"],
     {"page": True, "details": True, "reviews": True, "ratings": True}),
]


def bookinfo(policies: list[str]):
    files = [str(BOOKINFO / "bookinfo.yaml")]
    files += [str(BOOKINFO / f"authz-http-{name}.yaml") for name in policies]
    return load(files)


def pod_of(cluster, app: str):
    return next(p for p in cluster.pods if p.labels.get("app") == app)


def call(cluster, index, name: str, method: str = "GET"):
    caller, app, path = CALLS[name]
    principal = caller if "/" in caller else workload_principal(cluster, pod_of(cluster, caller))
    source_ip = "10.244.0.9" if "/" in caller else pod_of(cluster, caller).ip
    request = AuthzRequest(source_ip=source_ip, port=9080, source_principal=principal,
                           method=method, path=path, host=f"{app}:9080")
    return authorize(cluster, pod_of(cluster, app), request, policies=index)


@pytest.mark.parametrize(("policies", "expected"), [row[1:] for row in STEPS],
                         ids=[row[0] for row in STEPS])
def test_authz_http_task(policies, expected):
    cluster = bookinfo(policies)
    index = AuthorizationPolicies(cluster)
    got = {name: call(cluster, index, name).allowed for name in CALLS}
    assert got == expected


def test_the_denied_page_says_rbac_access_denied():
    cluster = bookinfo(["allow-nothing"])
    page = call(cluster, AuthorizationPolicies(cluster), "page")
    assert (page.status, page.body) == (403, "RBAC: access denied")
    assert page.details == "rbac_access_denied_matched_policy[none]"


def test_viewers_allow_get_only_from_their_principal():
    cluster = bookinfo(list(STEPS[-1][1]))
    index = AuthorizationPolicies(cluster)
    details = pod_of(cluster, "details")
    assert workload_principal(cluster, pod_of(cluster, "productpage")) == \
        "cluster.local/ns/default/sa/bookinfo-productpage"
    ok = call(cluster, index, "details")
    assert (ok.policy, ok.rule_index) == ("default/details-viewer", 0)
    for principal, method, path in [
        ("cluster.local/ns/default/sa/bookinfo-reviews", "GET", "/details/0"),  # wrong caller
        ("cluster.local/ns/default/sa/bookinfo-productpage", "POST", "/details/0"),  # not GET
        (None, "GET", "/details/0"),  # plaintext has no principal
    ]:
        request = AuthzRequest(source_ip="10.244.0.9", port=9080, source_principal=principal,
                               method=method, path=path)
        decision = authorize(cluster, details, request, policies=index)
        assert not decision.allowed and decision.status == 403
    # productpage-viewer has no `from`: a GET from anyone, even plaintext, is allowed
    page = authorize(cluster, pod_of(cluster, "productpage"),
                     AuthzRequest(source_ip="203.0.113.7", port=9080, method="GET",
                                  path="/productpage"), policies=index)
    assert page.allowed and page.policy == "default/productpage-viewer"
    assert not call(cluster, index, "page", method="POST").allowed
