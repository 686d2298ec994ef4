"""`netsim ingress route|list` as a user runs them: the issue's exact JSON, text, exit codes and
one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netsim.cli import main
from netsim.cluster import load

ROOT = Path(__file__).resolve().parents[1]
SHOP = str(ROOT / "examples" / "shop")
NO_CONTROLLER = str(ROOT / "tests" / "data" / "ingress" / "no-controller.yaml")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def shop_endpoints() -> dict[str, list[str]]:
    """Each shop app's ready pod addresses with the container port its Service targets (the
    `http` containerPort in 20-apps.yaml: web 8080, api 8000)."""
    cluster = load([SHOP])
    ports = {"web": 8080, "api": 8000}
    return {app: [f"{p.ip}:{port}" for p in cluster.pods
                  if p.labels.get("app") == app and p.ready] for app, port in ports.items()}


def test_route_json_is_the_issue_shape(capsys, shop_endpoints):
    code, out, err = run(capsys, "ingress", "route", "-f", SHOP, "--host", "shop.example.com",
                         "--path", "/api/v1/cart", "--scheme", "https", "-o", "json")
    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    data = json.loads(out)
    assert list(data) == ["status", "ingress", "rule", "backend", "endpoints", "tlsSecret"]
    assert sorted(data.pop("endpoints")) == sorted(shop_endpoints["api"])
    assert data == {
        "status": 200, "ingress": "shop/shop",
        "rule": {"host": "shop.example.com", "path": "/api", "pathType": "Prefix"},
        "backend": {"service": "shop/api", "port": 80, "portName": "http"},
        "tlsSecret": "shop/shop-tls"}


def test_route_json_no_match(capsys):
    code, out, _ = run(capsys, "ingress", "route", "-f", SHOP, "--host", "other.example.com",
                       "--path", "/", "-o", "json")
    assert code == 1
    assert json.loads(out) == {"status": 404, "ingress": None, "rule": None, "backend": None,
                               "endpoints": [], "tlsSecret": None}


def test_route_text(capsys, shop_endpoints):
    code, out, _ = run(capsys, "ingress", "route", "-f", SHOP, "--host", "shop.example.com",
                       "--scheme", "https")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("request:    GET https://shop.example.com/  (the Ingress v1 "
                        "specification)")
    assert lines[1:6] == [
        "status:     200",
        "ingress:    shop/shop  (class nginx, k8s.io/ingress-nginx)",
        "rule:       host shop.example.com  path /  Prefix",
        "backend:    Service shop/web port 80",
        "endpoints:  " + ", ".join(_ordered(out, shop_endpoints["web"])),
    ]
    assert "tls:        Secret shop/shop-tls" in lines
    assert any(line.startswith("controller: ingress-nginx/ingress-nginx-controller-")
               and line.endswith("behind LoadBalancer Service "
                                 "ingress-nginx/ingress-nginx-controller (203.0.113.10)")
               for line in lines)
    assert any(line.startswith("adds:       X-Real-IP: <client>, X-Forwarded-For: <client>")
               for line in lines)


def _ordered(out: str, endpoints: list[str]) -> list[str]:
    """The endpoints in the order the output lists them (a set comparison, line-shaped)."""
    line = next(x for x in out.splitlines() if x.startswith("endpoints:"))
    shown = line.split(None, 1)[1].split(", ")
    assert sorted(shown) == sorted(endpoints)
    return shown


def test_route_nginx_compat_redirects_plain_http(capsys):
    code, out, _ = run(capsys, "ingress", "route", "-f", SHOP, "--host", "shop.example.com",
                       "--path", "/api", "--nginx-compat")
    assert code == 0
    assert "status:     308" in out
    assert "location:   https://shop.example.com/api" in out


def test_route_with_ingress_class(capsys):
    code, out, _ = run(capsys, "ingress", "route", "-f", SHOP, "--host", "shop.example.com",
                       "--ingress-class", "nginx", "-o", "json")
    assert (code, json.loads(out)["ingress"]) == (0, "shop/shop")


@pytest.mark.parametrize(("argv", "message"), [
    (["--path", "api"], "error: command line: --path: must start with '/', got 'api'\n"),
    (["--ingress-class", "traefik"],
     "error: command line: --ingress-class: no IngressClass 'traefik' (known: nginx)\n"),
    (["--host", "a b"], "error: command line: --host: must be a host name or address, "
     "got 'a b'\n"),
])
def test_route_errors_are_one_line(capsys, argv, message):
    base = ["ingress", "route", "-f", SHOP, "--host", "shop.example.com"]
    code, out, err = run(capsys, *base, *argv)
    assert (code, out, err) == (2, "", message)


def test_list_shop(capsys, shop_endpoints):
    code, out, err = run(capsys, "ingress", "list", "-f", SHOP)
    assert (code, err) == (0, "")
    sections = out.split("\n\n")
    assert sections[0].splitlines() == [
        "Controllers:",
        "  CLASS   CONTROLLER             DEFAULT   NAMESPACE       PODS   SERVICE"
        "                                  TYPE           EXTERNAL-IP    PORT(S)",
        "  nginx   k8s.io/ingress-nginx   true      ingress-nginx   1      "
        "ingress-nginx/ingress-nginx-controller   LoadBalancer   203.0.113.10   "
        "80:31080/TCP,443:31443/TCP",
    ]
    assert sections[1].splitlines() == [
        "IngressClasses:",
        "  NAME    CONTROLLER             DEFAULT",
        "  nginx   k8s.io/ingress-nginx   true",
    ]
    shop = sections[2].splitlines()
    assert shop[:7] == [
        "Name:             shop",
        "Namespace:        shop",
        "Ingress Class:    nginx (from spec.ingressClassName)",
        "Default backend:  <default>",
        "TLS:",
        "  shop-tls terminates shop.example.com",
        "Rules:",
    ]
    assert shop[7].split() == ["Host", "Path", "Type", "Backends"]
    assert shop[8].split() == ["----", "----", "----", "--------"]
    assert shop[9].strip() == "shop.example.com"
    web, api = shop[10].split(), shop[11].split()
    assert web[:3] == ["/", "Prefix", "web:80"]
    assert sorted(web[3].strip("()").split(",")) == sorted(shop_endpoints["web"])
    assert api[:3] == ["/api", "Prefix", "api:http"]
    assert sorted(api[3].strip("()").split(",")) == sorted(shop_endpoints["api"])


def test_list_says_when_the_controller_is_emulated(capsys):
    code, out, _ = run(capsys, "ingress", "list", "-f", NO_CONTROLLER)
    assert code == 0
    assert "NodePort (emulated)" in out
    assert "  note: emulated by netsim: no ingress controller runs in the manifests" in out
    assert ("Default backend:  taken:80 (<error: Service default/taken port 80 has no ready "
            "endpoint>)") in out
