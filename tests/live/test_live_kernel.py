"""Live mode on the kernel: what `up` builds is what the emulator computed (ip route, ip neigh,
bridge fdb, ipset save), the probes can disagree, and nothing is left behind when `up` fails
or a probe is interrupted."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from netsim.cluster import load_inputs
from netsim.conformance.runner import load_suite
from netsim.dataplane import build
from netsim.live import probe, realize, server
from netsim.live.plan import plan
from netsim.live.state import LiveError, load_state, netns_name, state_path
from netsim.live.suite import base_docs, case_cluster, live
from netsim.netns import format_fdb, format_neighbour, format_route
from tests.live.conftest import needs_kernel, prefixed

pytestmark = [pytest.mark.kernel, needs_kernel]


def suite_dataplane(encapsulation: str = "None"):
    return build(load_inputs([base_docs()], overrides={"calico_encapsulation": encapsulation}))


def ip(*argv: str) -> list[str]:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, check=True)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("encapsulation", ["None", "VXLAN"])
def test_the_kernel_holds_the_emulators_routes_neighbours_and_fdb(prefix, encapsulation):
    dp = suite_dataplane(encapsulation)
    built = plan(dp)
    report = realize.up(built, prefix)
    try:
        names = report.state.namespaces
        for ns in built.namespaces:
            if ns.id in ("underlay", "external"):
                continue
            name, state = names[ns.id], ns.state
            # `ip route` prints the main table in the kernel's dump order, as netsim does
            assert ip("-n", name, "-4", "route") == [format_route(r) for r in state.routes], \
                ns.id
            permanent = [format_neighbour(n) for n in state.neighbours
                         if n.state == "PERMANENT"]
            assert sorted(ip("-n", name, "neigh", "show", "nud", "permanent")) == \
                sorted(permanent), ns.id
            for entry in state.fdb:
                shown = subprocess.run(["bridge", "-n", name, "fdb", "show", "dev", entry.dev],
                                       capture_output=True, text=True, check=True).stdout
                assert format_fdb(entry).replace(f" dev {entry.dev}", "") in shown
        if encapsulation == "VXLAN":
            details = " ".join(ip("-n", names["host:node-1"], "-d", "link", "show",
                                  "vxlan.calico"))
            assert "vxlan id 4096" in details and "dstport 4789" in details
    finally:
        realize.teardown(report.state)


@pytest.mark.skipif(shutil.which("ipset") is None, reason="the ipset tool is not installed")
def test_felix_sets_in_the_kernel_are_the_emulators(prefix):
    from cni.felix import compile_felix

    _, cases = load_suite("networkpolicy")
    case = next(c for c in cases if c.str("name") == "ingress-named-port")
    dp = build(case_cluster(case, {"calico_encapsulation": "None"}))
    with live(dp, prefix) as (state, _):
        saved = subprocess.run(["ip", "netns", "exec", state.namespaces["host:node-1"],
                                "ipset", "save"], capture_output=True, text=True,
                               check=True).stdout
        felix = compile_felix(dp.cluster, "node-1", 4)
        want = {line for line in felix.ipset_text().splitlines() if line.startswith("add ")}
        assert {line for line in saved.splitlines() if line.startswith("add ")} == want
        assert any(",tcp:" in line for line in want)  # the named-port set, hash:ip,port


def test_up_twice_is_refused_and_down_removes_everything(prefix, run_dir):
    built = plan(suite_dataplane())
    report = realize.up(built, prefix)
    assert len(prefixed(prefix)) == len(built.namespaces)
    with pytest.raises(LiveError, match="already up"):
        realize.up(built, prefix)
    assert len(prefixed(prefix)) == len(built.namespaces)  # the refusal touched nothing
    pid = report.state.server_pid
    removed = realize.down(prefix)
    assert sorted(removed) == sorted(report.state.namespaces.values())
    assert prefixed(prefix) == []
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
    assert not state_path(prefix).exists() and not run_dir.exists()


def test_a_namespace_of_the_users_is_never_taken(prefix):
    built = plan(suite_dataplane())
    theirs = netns_name(prefix, "underlay")
    subprocess.run(["ip", "netns", "add", theirs], check=True)
    try:
        with pytest.raises(LiveError, match=f"{theirs} already exists"):
            realize.up(built, prefix)
        assert prefixed(prefix) == [theirs]  # still there, and nothing else made
        assert not state_path(prefix).exists()
    finally:
        subprocess.run(["ip", "netns", "del", theirs], check=True)


def test_a_failure_midway_through_up_leaves_nothing(prefix, monkeypatch):
    built = plan(suite_dataplane())
    calls = []
    configure = realize._configure

    def failing(name, ns):
        calls.append(name)
        if len(calls) == 6:
            raise RuntimeError("injected failure")
        return configure(name, ns)

    monkeypatch.setattr(realize, "_configure", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        realize.up(built, prefix)
    assert len(calls) >= 6
    assert prefixed(prefix) == []
    assert not state_path(prefix).exists()


def test_an_interrupt_while_the_servers_start_leaves_nothing(prefix, monkeypatch):
    started = []
    start = server.start

    def spy(spec, log):
        proc = start(spec, log)
        started.append(proc)
        return proc

    def interrupted(proc, log):
        raise KeyboardInterrupt

    monkeypatch.setattr(server, "start", spy)
    monkeypatch.setattr(server, "wait_ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        realize.up(plan(suite_dataplane()), prefix)
    assert started and started[0].poll() is not None  # the daemon was ended
    assert prefixed(prefix) == []
    assert not state_path(prefix).exists()


def test_an_interrupt_during_a_probe_closes_its_sockets_and_comes_home(prefix, monkeypatch):
    dp = suite_dataplane()
    home = os.readlink("/proc/thread-self/ns/net")
    with live(dp, prefix) as (state, _):
        probes = probe.pod_probes(dp, [80], ["TCP"])
        fds = len(os.listdir("/proc/self/fd"))
        step = probe._step
        seen = []

        def interrupting(attempt, sel):
            seen.append(attempt)
            if len(seen) == 10:
                raise KeyboardInterrupt
            return step(attempt, sel)

        monkeypatch.setattr(probe, "_step", interrupting)
        with pytest.raises(KeyboardInterrupt):
            probe.run(probes, state.namespaces)
        assert len(os.listdir("/proc/self/fd")) == fds  # every probe socket closed
        assert os.readlink("/proc/thread-self/ns/net") == home
        monkeypatch.undo()
        # the live cluster is untouched and still answers
        again = probe.compare(dp, probes[:8], state.namespaces)
        assert all(c.agree for c in again)


def test_an_interrupt_inside_a_live_session_takes_it_down(prefix, monkeypatch):
    dp = suite_dataplane()
    monkeypatch.setattr(probe, "_step", lambda attempt, sel: (_ for _ in ()).throw(
        KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt), live(dp, prefix) as (state, _):
        assert len(prefixed(prefix)) == len(state.namespaces)
        probe.compare(dp, probe.pod_probes(dp, [80], ["TCP"]), state.namespaces)
    assert prefixed(prefix) == []
    with pytest.raises(LiveError):
        load_state(prefix)


def test_the_referee_can_say_no(prefix):
    """Rules of the base cluster in the kernel, a default-deny policy in the prediction: the
    kernel delivers what netsim says is denied, and the comparison says so pair by pair."""
    _, cases = load_suite("networkpolicy")
    case = next(c for c in cases if c.str("name") == "default-deny-ingress")
    denied = build(case_cluster(case, {"calico_encapsulation": "None"}))
    with live(suite_dataplane(), prefix) as (state, _):
        comparisons = probe.compare(denied, probe.pod_probes(denied, [80], ["TCP"]),
                                    state.namespaces)
    wrong = {(c.probe.source_label, c.probe.target) for c in comparisons if not c.agree}
    sources = _pods() + [p.key for p in denied.cluster.pods_in("kube-system")]  # CoreDNS
    assert wrong == {(a, b) for a in sources for b in _pods() if a != b and b[0] == "x"}
    assert all(c.kernel.result == "delivered" for c in comparisons)


def _pods() -> list[str]:
    return [f"{ns}/{pod}" for ns in "xyz" for pod in "abc"]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
