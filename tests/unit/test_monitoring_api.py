"""The public surface of ``conveyor.monitoring``: every export resolves, and importing the
package (as a policy parser does) stays light."""

from __future__ import annotations

import subprocess
import sys

import conveyor.monitoring as monitoring


def test_every_export_resolves() -> None:
    assert sorted(monitoring.__all__) == sorted(set(monitoring.__all__))
    for name in monitoring.__all__:
        assert getattr(monitoring, name) is not None, name
    assert set(dir(monitoring)) >= set(monitoring.__all__)


def test_importing_the_package_loads_no_data_library() -> None:
    code = (
        "import sys, conveyor.monitoring; "
        "print(sorted(m for m in ('pandas', 'duckdb', 'sklearn', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
