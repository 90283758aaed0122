"""What ships beside the code: the licence, the citation, the constraints every install and run is tied to,
and the workflow that publishes the book."""

import hashlib
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from openmed_repro.infra import atomic_files, job_settings, lifecycle, paths, runs

ROOT = paths.PROJECT_ROOT
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt, the appendix's copyright line as published
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
COPYRIGHT = "   Copyright 2026 The openmed-repro authors"


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_licence_is_the_unmodified_apache_2_text_with_this_projects_copyright_line():
    text = (ROOT / "LICENSE").read_text()
    assert text.count(COPYRIGHT + "\n") == 1
    published = text.replace(COPYRIGHT, "   Copyright [yyyy] [name of copyright owner]")
    assert hashlib.sha256(published.encode()).hexdigest() == APACHE_2_SHA256
    assert PYPROJECT["project"]["license"] == "Apache-2.0" and PYPROJECT["project"]["license-files"] == ["LICENSE"]


def test_the_citation_file_cites_this_version_of_the_package_and_the_arxiv_paper_it_reproduces():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= citation.keys() and citation["type"] == "software"
    assert citation["version"] == PYPROJECT["project"]["version"]
    assert citation["license"] == PYPROJECT["project"]["license"]
    paper, = [r for r in citation["references"] if r["doi"] == "10.48550/arXiv.2508.01630"]
    assert paper["type"] == "article" and paper["year"] == 2025 and paper["title"].startswith("OpenMed NER:")
    assert paper["authors"] == [{"family-names": "Panahi", "given-names": "Maziyar"}]
    assert {"type": "other", "value": "arXiv:2508.01630"} in [
        {"type": i["type"], "value": i["value"]} for i in paper["identifiers"]]
    assert paper["url"] == "https://arxiv.org/abs/2508.01630"


def test_every_pin_of_pyproject_is_the_version_in_the_constraints_file():
    pinned = constraints()
    requirements = PYPROJECT["project"]["dependencies"] + [
        r for extra in PYPROJECT["project"]["optional-dependencies"].values() for r in extra]
    for requirement in map(Requirement, requirements):
        (specifier,) = requirement.specifier
        assert specifier.operator == "=="
        assert pinned.get(canonicalize_name(requirement.name)) == specifier.version, requirement


def test_constraints_carry_no_local_build_label_so_that_a_cuda_torch_satisfies_them():
    pinned = constraints()
    assert pinned["torch"] == "2.13.0"
    assert not [f"{name}=={version}" for name, version in pinned.items() if "+" in version]
    assert "openmed-repro" not in pinned


def test_make_venv_installs_with_the_constraints_and_reinstalls_when_they_change():
    makefile = (ROOT / "Makefile").read_text()
    assert "$(STAMP): pyproject.toml constraints.txt\n" in makefile
    assert "$(BIN)/pip install --quiet -e '.[dev]' -c constraints.txt" in makefile
    pip = [entry["pip"] for entry in yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
           if isinstance(entry, dict)]
    assert pip == [["-c constraints.txt", "-e .[dev]"]]


def provenance_of_a_run(run_dir: Path) -> dict:
    """The provenance.json of a run whose training is a stand-in that takes no time."""
    settings = job_settings.load_run_config("smoke", {"dataset": "ncbi_disease"})
    lifecycle.run(settings, run_dir, lambda *_: lifecycle.Outcome({"f1": 0.5}, [], {}))
    return atomic_files.read_json(run_dir / runs.PROVENANCE)


def test_the_provenance_of_a_run_names_the_constraints_file_by_its_sha256(tmp_path):
    digest = hashlib.sha256((ROOT / "constraints.txt").read_bytes()).hexdigest()
    assert provenance_of_a_run(tmp_path / "run")["constraints"] == {"file": "constraints.txt", "sha256": digest}


def test_without_a_constraints_file_the_provenance_records_no_digest(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)
    assert provenance_of_a_run(tmp_path / "run")["constraints"] == {"file": "constraints.txt", "sha256": None}


def test_the_book_workflow_builds_with_make_book_and_deploys_the_html_to_pages():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    triggers = workflow[True]   # YAML 1.1 reads the key `on` as true
    assert triggers["push"] == {"branches": ["main"]} and "workflow_dispatch" in triggers
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build = workflow["jobs"]["build"]["steps"]
    assert [step["run"] for step in build if "run" in step] == ["make book"]
    python, = [step for step in build if step.get("uses", "").startswith("actions/setup-python@")]
    assert python["with"]["python-version"] == "3.11"
    upload, = [step for step in build if step.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert upload["with"]["path"] == "runs/book/cpu/_build/html"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert any(step.get("uses", "").startswith("actions/deploy-pages@") for step in deploy["steps"])


def test_the_readme_layout_names_every_module_of_the_library():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):readme.index("## Choices the paper leaves open")]
    words = set(re.findall(r"[a-z_]+", layout))
    modules = {path.stem for path in (ROOT / "openmed_repro").glob("*/*.py") if path.stem != "__init__"}
    parts = {path.parent.name for path in (ROOT / "openmed_repro").glob("*/__init__.py")}
    assert not modules - words, f"modules the README's layout does not name: {sorted(modules - words)}"
    assert not parts - words, f"parts the README's layout does not name: {sorted(parts - words)}"
