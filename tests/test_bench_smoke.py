"""CI runs a short benchmark to prove the load generator and the scenario still work.

The figures are not checked here (performance claims come from bench/REPORT.md); the run
fails only on real errors such as lost or duplicated messages at a low rate.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.servers import ROOT

pytestmark = pytest.mark.slow


def test_bench_smoke_scenario_completes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
