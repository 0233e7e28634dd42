"""Re-execute notebooks top to bottom in full mode and save them with their outputs.

    .venv/bin/python tools/execute_notebooks.py notebooks/*.ipynb

Each notebook runs in a fresh kernel from its own folder, with ``MELODY_FAST`` unset,
no per-cell timings recorded, and the widgets' state stored in the notebook's metadata
(so JupyterLab shows the widgets' last state without re-running). The kernelspec is
written as JupyterLab writes it, so that opening a notebook does not mark it modified.
The wall time of each notebook is printed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient


def execute(path: Path, timeout: int = 7200) -> float:
    nb = nbformat.read(path, as_version=4)
    spec = KernelSpecManager().get_kernel_spec("python3")
    nb.metadata["kernelspec"] = {
        "display_name": spec.display_name,
        "language": spec.language,
        "name": "python3",
    }
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        store_widget_state=True,
    )
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    nbformat.write(nb, path)
    return seconds


def main(paths: list[str]) -> int:
    os.environ.pop("MELODY_FAST", None)
    if not paths:
        print(__doc__)
        return 2
    for name in paths:
        path = Path(name)
        print(f"executing {path} ...", flush=True)
        seconds = execute(path)
        print(f"  {path.name}: {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
