#!/usr/bin/env python3
"""Checks a /metrics scrape read on stdin, as server/tests/it/dashboard.rs does.

1. The official Python client's OpenMetrics parser reads it whole: `# EOF`
   last, names valid, each sample's name what its family's type allows
   (a counter's `_total`), histogram buckets cumulative and ending at +Inf.
2. With `--promtool PATH`: the same families, written in the classic text
   format by that client, go through `promtool check metrics`, which lints
   the naming conventions (units, `_total`, help text). promtool's parser
   reads the classic format only: it stops at the `info` type of
   `daas_build_info`, so it cannot be given the scrape as served.

    curl -s http://127.0.0.1:9464/metrics | .venv/bin/python scripts/check-openmetrics.py

Prints one line per family; exits 1 with the parser's or promtool's words.
The virtual environment of scripts/setup.sh has the client
(scripts/requirements.txt) and promtool (.venv/bin/promtool).
"""

import argparse
import subprocess
import sys

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families


class Families:
    """A registry holding already parsed families, for generate_latest."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


def main():
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--promtool", help="also lint with `PATH check metrics`")
    opts = args.parse_args()
    text = sys.stdin.read()
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as err:
        sys.exit(f"not valid OpenMetrics: {err}")
    if not families:
        sys.exit("no metric family in the input")
    for family in families:
        print(f"{family.type} {family.name} ({len(family.samples)} samples)")
    if opts.promtool:
        classic = generate_latest(Families(families))
        lint = subprocess.run(
            [opts.promtool, "check", "metrics"],
            input=classic,
            capture_output=True,
        )
        said = (lint.stdout + lint.stderr).decode().strip()
        if lint.returncode != 0:
            sys.exit(f"promtool check metrics (exit {lint.returncode}):\n{said}")
        print(f"promtool check metrics: ok{': ' + said if said else ''}")
    print(f"ok: {len(families)} families")


if __name__ == "__main__":
    main()
