"""One place for a run's identity: every runs/ or results path of the library, the Makefile, the notebooks and the
book's parameters comes from infra/layout.py."""

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from openmed_repro.infra import layout, paths
from openmed_repro.infra.job_settings import load_run_config

ROOT = paths.PROJECT_ROOT
ROOTS = ("runs", "results")
PATH_LITERAL = re.compile(r"^(\.\./)?(runs|results)(/|$)")


def _path_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants used as a place: an argument of Path(), an operand of `/`, a parameter's default, a
    `default=` keyword, an f-string's start, or any string that starts with runs/ or results/."""
    found = []

    def is_root(node) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and PATH_LITERAL.match(node.value)

    for node in ast.walk(tree):
        places = []
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Path":
            places += node.args
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            places += [node.left, node.right]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            places += node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
        if isinstance(node, ast.keyword) and node.arg == "default":
            places.append(node.value)
        if isinstance(node, ast.JoinedStr) and node.values:
            places.append(node.values[0])
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            places.append(node.value)
        if isinstance(node, ast.Assign) and any(re.search(r"dir|root|path|json", getattr(target, "id", ""))
                                                for target in node.targets):
            places.append(node.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "\n" not in node.value \
                and re.match(r"^(\.\./)?(runs|results)/\S*$", node.value):
            places.append(node)
        found += [(place.lineno, place.value) for place in places if is_root(place)]
    return sorted(set(found))


def test_the_library_names_no_runs_or_record_path_outside_the_layout():
    offenders = []
    for path in sorted((ROOT / "openmed_repro").rglob("*.py")):
        if path == ROOT / "openmed_repro/infra/layout.py":
            continue
        offenders += [f"{path.relative_to(ROOT)}:{line}: {value!r}"
                      for line, value in _path_literals(ast.parse(path.read_text(encoding="utf-8")))]
    assert not offenders, "paths spelled outside infra/layout.py:\n" + "\n".join(offenders)


def test_the_literal_check_finds_a_path_spelled_by_hand():
    code = 'def f(root="runs"):\n    return Path("results") / "x", "runs/sweep"\n'
    assert [value for _, value in _path_literals(ast.parse(code))] == ["runs", "results", "runs/sweep"]
    assert not _path_literals(ast.parse('payload["runs"] = 1\nname = "results"'))


def test_the_notebooks_code_names_no_runs_or_record_path():
    offenders = []
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            code = "".join(cell["source"])
            offenders += [f"{notebook.name}: {value!r}" for _, value in _path_literals(ast.parse(code))]
    assert not offenders, offenders


def test_the_book_parameters_name_the_roots_through_the_layout():
    def strings(value):
        if isinstance(value, dict) and "layout" in value:
            return
        if isinstance(value, dict):
            yield from (s for item in value.values() for s in strings(item))
        elif isinstance(value, list):
            yield from (s for item in value for s in strings(item))
        elif isinstance(value, str):
            yield value
    book = yaml.safe_load((ROOT / "parameters/book.yaml").read_text(encoding="utf-8"))
    spelled = [s for s in strings(book["profiles"]) if PATH_LITERAL.match(s) or s == layout.LAYOUT.tuned_suffix]
    assert not spelled, spelled


def test_the_makefile_spells_no_run_directory():
    recipes = [line for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
               if not line.lstrip().startswith("#")]
    spelled = [line.strip() for line in recipes if re.search(r"(?<![\w/.$(])(runs|results)/|(?<!-)-tuned\b", line)]
    assert not spelled, spelled


def test_a_run_and_its_record_share_one_name():
    run_dir = layout.default_directory(load_run_config("cpu", {"dataset": "ncbi_disease"}))
    assert run_dir == Path("runs/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42")
    assert layout.LAYOUT.record_name(run_dir) == "finetune/ncbi_disease-minilm-l6-cpu-lora-seed42"
    assert layout.LAYOUT.recorded(run_dir) == ROOT / "results/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42"
    assert layout.LAYOUT.tuned(run_dir).name == "ncbi_disease-minilm-l6-cpu-lora-seed42-tuned"
    assert layout.LAYOUT.record.is_absolute() and not layout.LAYOUT.runs.is_absolute()


def test_a_path_outside_any_runs_folder_has_no_record_name(tmp_path):
    with pytest.raises(Exception, match="not inside a runs/ directory"):
        layout.LAYOUT.record_name(tmp_path / "elsewhere")
    assert layout.LAYOUT.runs_root_of(tmp_path / "runs" / "finetune" / "x") == tmp_path.resolve()


def test_the_layout_is_one_frozen_object():
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.LAYOUT.runs = Path("elsewhere")
