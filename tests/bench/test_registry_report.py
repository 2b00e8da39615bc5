"""BENCHMARKS.md's registry section is rendered only from a run's results file (bench/registry/run.py):
the published figures are exactly what `run.py --from-results` renders from the committed results, every
figure comes from that file, and without one there are no figures."""
import ast
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_PY = ROOT / "bench" / "registry" / "run.py"
# The results of an earlier full run (2026-11-29), kept as this test's input.
SAMPLE = Path(__file__).resolve().parent / "registry-results-2026-11-29.json"


def load_run():
    spec = importlib.util.spec_from_file_location("registry_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = load_run()


def published_section() -> str:
    text = (ROOT / "BENCHMARKS.md").read_text()
    i = text.find("\n" + run.MARKER + "\n")
    assert i >= 0, "BENCHMARKS.md has a registry section"
    return text[i + 1:]


def test_the_published_section_is_what_the_committed_results_render():
    if run.RESULTS.is_file():
        assert published_section() == run.render(run.RESULTS), (
            "BENCHMARKS.md's registry section differs from what bench/registry/run.py --from-results renders "
            f"from {run.RESULTS.relative_to(ROOT)}: figures typed by hand, or results not committed")
    else:
        # No results file: no figures, only the note saying so.
        assert published_section() == run.withdrawn_section()


def test_every_figure_comes_from_the_results_file(tmp_path):
    section = run.render(SAMPLE)
    digest = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert f"SHA-256 `{digest[:16]}…`" in section
    assert "**3,449**" in section and "**1,347**" in section
    # Change one figure in the results: the section changes with it, and names the other file's digest.
    res = json.loads(SAMPLE.read_text())
    res["throughput"]["sqlite"]["rust"]["stored_per_s"] = 1234.4
    changed = tmp_path / "results.json"
    changed.write_text(json.dumps(res))
    other = run.render(changed)
    assert "**1,234**" in other and "**3,449**" not in other
    assert hashlib.sha256(changed.read_bytes()).hexdigest()[:16] in other
    # Package versions are the run's, not those of whoever renders.
    res["versions"] = {"standardwebhooks": "9.9.9", "psycopg": "8.8.8", "uvicorn": "7.7.7", "gunicorn": "6.6.6"}
    changed.write_text(json.dumps(res))
    assert "standardwebhooks 9.9.9, psycopg 8.8.8, uvicorn 7.7.7, gunicorn 6.6.6" in run.render(changed)


def test_without_a_results_file_there_are_no_figures(tmp_path):
    with pytest.raises(run.NoResults):
        run.render(tmp_path / "missing.json")
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n")
    done = subprocess.run([sys.executable, str(RUN_PY), "--from-results", str(tmp_path / "missing.json"),
                           "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "no such results file" in done.stderr
    assert out.read_text() == "# Benchmarks\n", "nothing was written"
    # With one, the section is written (replacing the previous one).
    done = subprocess.run([sys.executable, str(RUN_PY), "--from-results", str(SAMPLE), "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "# Benchmarks\n\n" + run.render(SAMPLE)


def test_the_report_is_rendered_only_by_render():
    """report() turns results into text; only render(), which reads a results file, calls it."""
    tree = ast.parse(RUN_PY.read_text())
    callers = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "report":
                    callers.add(fn.name)
    assert callers == {"render"}
    # And a full run renders its section from the file it has just written.
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    source = ast.get_source_segment(RUN_PY.read_text(), main)
    assert source.index("results.write_text(") < source.index("section = render(results)")
