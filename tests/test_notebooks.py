"""The committed notebooks as files: what a reader opens before running anything.

nbval re-executes every notebook (``testpaths`` includes ``notebooks/``); these tests
check what was stored: executed top to bottom, no errors, no machine paths, and a
kernelspec that JupyterLab keeps as it is (so opening a notebook does not dirty it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").rglob("*.ipynb"))
LEAK = re.compile(r"((?<![\w:./~-])/(?:[A-Za-z_][\w.-]*/){2,}| at 0x[0-9a-f]{6,})")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def outputs_text(nb: dict):
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            yield i, out, text


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_kernelspec_is_what_jupyterlab_writes(path):
    spec = KernelSpecManager().get_kernel_spec("python3")
    ks = load(path)["metadata"]["kernelspec"]
    assert ks == {"display_name": spec.display_name, "language": "python", "name": "python3"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_top_to_bottom_without_errors(path):
    nb = load(path)
    counts = [
        c["execution_count"]
        for c in nb["cells"]
        if c["cell_type"] == "code" and "".join(c["source"]).strip()
    ]
    assert counts == list(range(1, len(counts) + 1))
    errors = [i for i, out, _ in outputs_text(nb) if out["output_type"] == "error"]
    assert errors == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_hold_no_machine_paths_or_addresses(path):
    leaks = [(i, m.group(0)) for i, _, text in outputs_text(load(path)) if (m := LEAK.search(text))]
    assert leaks == []
