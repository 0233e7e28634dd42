"""The committed notebooks as files: what a reader opens before running anything.

nbval re-executes every notebook (``testpaths`` includes ``notebooks/``); these tests
check what was stored: executed top to bottom, no errors, no machine paths, and a
kernelspec that JupyterLab keeps as it is (so opening a notebook does not dirty it).
"""

from __future__ import annotations

import ast
import importlib
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


def test_every_notebook_has_its_solutions_and_nothing_else():
    main = sorted(p.stem for p in NOTEBOOKS if p.parent.name == "notebooks")
    solutions = sorted(p.stem for p in NOTEBOOKS if p.parent.name == "solutions")
    assert len(main) >= 6 and solutions == [f"{m}_solutions" for m in main]
    assert len(NOTEBOOKS) == len(main) + len(solutions)  # nothing in another folder


#: Modules the package had before and no longer has; a notebook naming one is stale.
REMOVED = re.compile(r"melody_utils\.(corpus|checkpoint|fileio|pipeline|research)\b")


def code_cells(nb: dict):
    """``(index, source)`` of each code cell, IPython magics and shell lines left out."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            lines = "".join(cell["source"]).splitlines()
            yield i, "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_import_only_what_the_package_has(path):
    """Every ``from melody_utils... import name`` names a module and attribute that exist:
    a stale notebook fails here, before nbval runs it."""
    missing = []
    for i, source in code_cells(load(path)):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                modules = [(a.name, []) for a in node.names if a.name.startswith("melody_utils")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "melody_utils"
            ):
                modules = [(node.module, [a.name for a in node.names])]
            else:
                continue
            for module, names in modules:
                try:
                    found = importlib.import_module(module)
                except ImportError:
                    missing.append((i, module))
                    continue
                missing += [(i, f"{module}.{n}") for n in names if not hasattr(found, n)]
    assert missing == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_removed_module_is_named(path):
    nb = load(path)
    named = [
        (i, m.group(0))
        for i, c in enumerate(nb["cells"])
        if (m := REMOVED.search("".join(c["source"])))
    ]
    named += [(i, m.group(0)) for i, _, text in outputs_text(nb) if (m := REMOVED.search(text))]
    assert named == []


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
    folders = re.compile(r"(?<![\w.])/(?:tmp|work|home|root|Users)/")
    html = [
        (i, m.group(0))
        for i, cell in enumerate(load(path)["cells"])
        for out in cell.get("outputs", [])
        if (m := folders.search("".join(out.get("data", {}).get("text/html", ""))))
    ]
    assert html == []


def has_output(nb: dict, predicate) -> bool:
    return any(predicate(out) for c in nb["cells"] for out in c.get("outputs", []))


def is_audio(out: dict) -> bool:
    data = out.get("data", {})
    return "<audio" in "".join(data.get("text/html", "")) or any(
        k.startswith("audio/") for k in data
    )


def is_notation(out: dict) -> bool:
    data = out.get("data", {})
    svg = "".join(data.get("image/svg+xml", "")) + "".join(data.get("text/html", ""))
    return "<svg" in svg and ("notehead" in svg.lower() or "data-pname" in svg)


MAIN = [p for p in NOTEBOOKS if p.parent.name == "notebooks"]


@pytest.mark.parametrize("path", MAIN, ids=lambda p: p.name)
def test_every_notebook_plays_music(path):
    assert has_output(load(path), is_audio), "a student should hear the music in every notebook"


@pytest.mark.parametrize("name", ["01_data_preparation.ipynb", "05_generation.ipynb"])
def test_score_notation_is_shown(name):
    path = next(p for p in NOTEBOOKS if p.name == name)
    assert has_output(load(path), is_notation), f"{name} shows no score notation"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_widget_outputs_have_stored_state(path):
    nb = load(path)
    views = {
        out["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for c in nb["cells"]
        for out in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
    }
    if not views:
        pytest.skip("no widgets in this notebook")
    state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    missing = views - set(state.get("state", {}))
    assert not missing, f"{len(missing)} widget views without stored state"


def exercises(nb: dict) -> list[str]:
    """The numbered items of a notebook's "## Exercises" section."""
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "## Exercises" in src:
            body = src.split("## Exercises", 1)[1].split("\n## ", 1)[0]
            return re.split(r"\n(?=\d+\. )", "\n" + body)[1:]
    return []


@pytest.mark.parametrize("path", MAIN, ids=lambda p: p.name)
def test_every_exercise_has_a_hint_an_expected_outcome_and_a_solution(path):
    items = exercises(load(path))
    assert len(items) >= 3, "a course needs exercises"
    for item in items:
        first = item.strip().splitlines()[0]
        assert "*Hint" in item, f"no hint: {first}"
        assert "*Expected" in item, f"no expected outcome: {first}"
    solutions = path.parent / "solutions" / f"{path.stem}_solutions.ipynb"
    assert solutions.exists(), f"no worked solutions for {path.name}"
    text = "\n".join("".join(c["source"]) for c in load(solutions)["cells"])
    for k in range(1, len(items) + 1):
        assert re.search(rf"(?m)^#+ .*\b{k}\b", text), f"{solutions.name}: no heading for {k}"


def test_readme_results_table_is_the_one_notebook_06_printed():
    """Every row of the README's "Results at a glance" is a row notebook 06 produced."""
    nb = load(next(p for p in NOTEBOOKS if p.name == "06_beyond_the_card.ipynb"))
    printed = {
        line
        for cell in nb["cells"]
        for out in cell.get("outputs", [])
        for line in "".join(out.get("data", {}).get("text/markdown", "")).splitlines()
    }
    readme = (NOTEBOOKS[0].parents[1] / "README.md").read_text()
    section = readme.split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(rows) >= 10, "the README's results table is missing"
    assert [row for row in rows if row not in printed] == []
