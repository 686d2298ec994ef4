"""`netsim mesh config` as a user runs it: istioctl-style tables, JSON, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netsim.cli import main
from netsim.cluster import load
from tests.proxy.test_sidecar_config import BOOKINFO, INJECT_DEFAULT, NEEDS_BOOKINFO

ROOT = Path(__file__).resolve().parents[1]
SHOP = str(ROOT / "examples" / "shop")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def shop_web() -> str:
    """A web pod of the shop example (names come from netsim's workload expansion)."""
    cluster = load([SHOP])
    return next(p.key for p in cluster.pods_in("shop") if p.name.startswith("web-"))


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_clusters_of_a_shop_sidecar(capsys, shop_web):
    code, out, err = run(capsys, "mesh", "config", "-f", SHOP, "-q", "--pod", shop_web,
                         "clusters")
    assert (code, err) == (0, "")
    table = rows(out)
    assert table[0] == ["SERVICE", "FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE",
                        "DESTINATION", "RULE"]
    assert ["api.shop.svc.cluster.local", "80", "v1", "outbound", "EDS", "api.shop"] in table
    assert ["8080", "-", "inbound", "ORIGINAL_DST"] in table
    assert ["postgres.data.svc.cluster.local", "5432", "-", "outbound", "ORIGINAL_DST"] in table
    assert not any(r[0].startswith("kube-dns") and r[1] == "53" and r[4] != "EDS"
                   for r in table[1:])


def test_listeners_and_routes_sections(capsys, shop_web):
    code, out, _ = run(capsys, "mesh", "config", "-f", SHOP, "-q", "--pod", shop_web,
                       "listeners")
    assert code == 0
    assert out.splitlines()[0].split() == ["ADDRESSES", "PORT", "MATCH", "DESTINATION"]
    table = rows(out)
    assert ["0.0.0.0", "15001", "ALL", "PassthroughCluster"] in table
    assert ["0.0.0.0", "80", "Trans:", "raw_buffer;", "App:", "http/1.1,h2c", "Route:", "80"] \
        in table
    # web is STRICT with 8080 PERMISSIVE (60-istio.yaml): 8080 keeps a plaintext chain.
    assert "Trans: raw_buffer; Addr: *:8080" in out
    code, out, _ = run(capsys, "mesh", "config", "-f", SHOP, "-q", "--pod", shop_web,
                       "routes")
    assert code == 0
    api = [r for r in rows(out) if r[1] == "api.shop.svc.cluster.local:80"]
    assert api and api[0][-1] == "api.shop"


def test_json_output(capsys, shop_web):
    code, out, _ = run(capsys, "mesh", "config", "-f", SHOP, "-q", "--pod", shop_web,
                       "endpoints", "-o", "json")
    assert code == 0
    statuses = json.loads(out)["clusterStatuses"]
    names = {s["name"] for s in statuses}
    assert "outbound|80|v1|api.shop.svc.cluster.local" in names
    code, out, _ = run(capsys, "mesh", "config", "-f", SHOP, "-q", "--pod", shop_web,
                       "-o", "json")
    assert set(json.loads(out)) == {"pod", "clusters", "listeners", "routes", "endpoints"}


def test_registry_only_flag(capsys, shop_web):
    code, out, _ = run(capsys, "mesh", "config", "-f", SHOP, "-q", "--pod", shop_web,
                       "routes", "--outbound-traffic-policy", "REGISTRY_ONLY")
    assert code == 0 and any(r[:2] == ["80", "block_all"] for r in rows(out))


@pytest.mark.parametrize(("argv", "message"), [
    (("--pod", "data/postgres-0"), "error: Pod data/postgres-0: no Istio sidecar: "),
    ((), "error: command line: --pod: required: --pod NAMESPACE/NAME"),
    (("--pod", "web"), "error: command line: --pod: must be NAMESPACE/NAME, got 'web'"),
    (("--pod", "shop/nope"), "error: command line: --pod: no Pod shop/nope"),
])
def test_errors_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, "mesh", "config", "-f", SHOP, "-q", *argv)
    assert (code, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1


def test_no_mesh_means_no_sidecars(capsys, shop_web):
    code, _, err = run(capsys, "mesh", "config", "-f", SHOP, "-q", "--no-mesh", "--pod",
                       shop_web)
    assert code == 2 and "mesh emulation is off" in err


def test_invalid_virtual_service_is_reported_with_its_field(capsys, tmp_path, shop_web):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
                   "  name: bad\n  namespace: shop\nspec:\n  hosts: [api]\n  http:\n"
                   "  - route: [{destination: {host: api}, weight: 300}]\n")
    code, _, err = run(capsys, "mesh", "config", "-f", SHOP, "-f", str(bad), "-q", "--pod",
                       shop_web)
    assert code == 2
    assert "VirtualService shop/bad: spec.http[0].route[0].weight: must be between 0 and 100" \
        in err


@NEEDS_BOOKINFO
def test_bookinfo_endpoints_by_subset(capsys, tmp_path):
    ns = tmp_path / "inject.yaml"
    ns.write_text(INJECT_DEFAULT)
    files = ["-f", str(BOOKINFO / "bookinfo.yaml"), "-f", str(ns),
             "-f", str(BOOKINFO / "destination-rule-all.yaml")]
    cluster = load([str(BOOKINFO / "bookinfo.yaml"), str(ns)])
    product = next(p.key for p in cluster.pods if p.name.startswith("productpage"))
    code, out, _ = run(capsys, "mesh", "config", *files, "-q", "--pod", product, "endpoints")
    assert code == 0
    by_cluster: dict[str, set[str]] = {}
    for endpoint, status, check, name in rows(out)[1:]:
        assert (status, check) == ("HEALTHY", "OK")
        by_cluster.setdefault(name, set()).add(endpoint)
    for version in ("v1", "v2", "v3"):
        (pod,) = [p for p in cluster.pods if p.labels.get("app") == "reviews"
                  and p.labels.get("version") == version]
        assert by_cluster[f"outbound|9080|{version}|reviews.default.svc.cluster.local"] == {
            f"{pod.ip}:9080"}
    assert len(by_cluster["outbound|9080||reviews.default.svc.cluster.local"]) == 3
