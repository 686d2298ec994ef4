"""`netsim test`: a team's connectivity expectations checked on the emulated dataplane."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    p = sub.add_parser("test", parents=[cluster], help="check connectivity expectations "
                       "(allow/deny, via, deliveredTo) on the emulated dataplane, for CI",
                       description="Trace every expectation of the files (every path) and "
                       "report each sender as a test case. Exit status: 0 all passed, 1 a "
                       "failure or an unresolvable reference, 2 bad input. The file format is "
                       "documented in netsim/expectations.py and the README.")
    p.add_argument("expectations", nargs="+", metavar="EXPECTATIONS",
                   help="a ConnectivityExpectations file or a directory of them (- for stdin)")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    from netsim.cli import load_cluster
    from netsim.cli_io import write_output
    from netsim.dataplane import build
    from netsim.expectations import load_expectations
    from netsim.expectations_report import as_json, counts, junit_xml, text
    from netsim.expectations_run import run

    sets = load_expectations(args.expectations)  # a bad file fails before the cluster loads
    cluster = load_cluster(args)
    results = run(build(cluster), sets)
    if args.junit:
        write_output(args.junit, junit_xml(results), "--junit")
    if args.output == "json":
        print(json.dumps(as_json(results), indent=2))
    else:
        sys.stdout.write(text(results))
    _, _, failed, errors = counts(results)
    return 1 if failed or errors else 0
