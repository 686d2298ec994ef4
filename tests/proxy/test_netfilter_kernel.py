"""The kernel as referee: restore rules in a throw-away network namespace and compare what
`iptables-save` prints with what the interpreter prints for the same text."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from proxy.netfilter import parse_ruleset
from tests.proxy.test_netfilter_parse import CANONICAL, NAT_CANONICAL, assert_same_tables

DATA = Path(__file__).resolve().parents[1] / "data" / "iptables"

pytestmark = pytest.mark.kernel


def _kernel_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "iptables-restore", "iptables-save", "ip6tables-restore"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(["unshare", "-n", "iptables-save"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        return f"cannot use iptables in a new network namespace: {probe.stderr.strip()}"
    return None


SKIP = _kernel_available()


def kernel_save(text: str, *, v6: bool = False, ipsets: str | None = None) -> str:
    """iptables-save after iptables-restore of `text` in a fresh network namespace."""
    prefix = "ip6tables" if v6 else "iptables"
    script = ""
    if ipsets is not None:
        script += "ipset restore < \"$1\" && "
    script += f"{prefix}-restore -c < \"$0\" && {prefix}-save -c"
    with tempfile.TemporaryDirectory() as tmp:
        rules, sets = Path(tmp, "rules"), Path(tmp, "sets")
        rules.write_text(text)
        sets.write_text(ipsets or "")
        done = subprocess.run(["unshare", "-n", "sh", "-c", script, str(rules), str(sets)],
                              capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(SKIP is not None, reason=SKIP or "")
@pytest.mark.parametrize(("name", "v6"), [("kube-proxy.restore", False),
                                          ("kube-proxy-v6.restore", True),
                                          ("istio.restore", False),
                                          ("istio-tproxy.restore", False),
                                          ("exotic.save", False)])
def test_fixture_prints_as_the_kernel_does(name, v6):
    text = (DATA / name).read_text()
    ruleset = parse_ruleset(text, name, strict=False)
    assert_same_tables(ruleset.dump(counters=True), kernel_save(text, v6=v6))


@pytest.mark.skipif(SKIP is not None or shutil.which("ipset") is None,
                    reason=SKIP or "ipset is not installed")
def test_node_dump_prints_as_the_kernel_does():
    text = (DATA / "node-w1.save").read_text()
    ruleset = parse_ruleset(text, "node-w1.save", strict=False)
    real = kernel_save(text, ipsets=(DATA / "calico.ipset").read_text())
    assert_same_tables(ruleset.dump(counters=True), real)


@pytest.mark.skipif(SKIP is not None, reason=SKIP or "")
def test_canonical_rules_print_as_the_kernel_does():
    rules = [rule for rule, _ in CANONICAL if "nfacct" not in rule]  # needs an nfacct object
    text = "*filter\n:X - [0:0]\n:Y - [0:0]\n" + "\n".join(rules) + "\nCOMMIT\n*nat\n:X - [0:0]\n"
    text += "\n".join(rule for rule, _ in NAT_CANONICAL) + "\nCOMMIT\n"
    ruleset = parse_ruleset(text)
    assert_same_tables(ruleset.dump(counters=True), kernel_save(text))
