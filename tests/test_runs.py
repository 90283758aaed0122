"""Run files: a reader sees the old content or the new, never a part, and no temporary is left behind; a run names
the commit it ran from, also from a tree copied without its repository."""

import os

import pytest

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, paths, run_provenance


def test_an_atomic_write_goes_through_a_hidden_temporary_beside_the_file(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    with atomic_files.atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary.is_file()
        assert temporary.name.startswith(".metrics.json.") and temporary.name.endswith(".tmp")
        temporary.write_bytes(b"\x00new")
        assert not target.exists()
    assert target.read_bytes() == b"\x00new"
    assert os.listdir(target.parent) == ["metrics.json"]


def test_a_failed_atomic_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "predictions.tsv"
    atomic_files.write_text(target, "old\n")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_files.atomic_path(target) as temporary:
            temporary.write_text("half of the new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["predictions.tsv"]


def test_an_atomically_written_file_has_an_ordinary_new_files_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_files.write_text(tmp_path / "config.json", "{}\n")
    finally:
        os.umask(umask)
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("content, reason", [(b'{"test": {"f1": 0.', "unreadable JSON"), (b"", "unreadable JSON"),
                                             (b'{"a": "\xff"}', "unreadable JSON")])
def test_a_cut_or_garbled_json_file_is_an_error_naming_it(tmp_path, content, reason):
    path = tmp_path / "metrics.json"
    path.write_bytes(content)
    with pytest.raises(OpenMedError, match=reason) as refused:
        atomic_files.read_json(path)
    assert str(refused.value).startswith(f"{path}: ")


def test_files_a_library_wrote_owner_only_get_the_permissions_the_umask_asks_for(tmp_path):
    weights = tmp_path / "model" / "adapter_model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    weights.chmod(0o600)
    umask = os.umask(0o002)
    try:
        atomic_files.follow_umask(tmp_path)
    finally:
        os.umask(umask)
    assert weights.stat().st_mode & 0o777 == 0o664


def test_a_tree_copied_without_git_names_the_commit_its_sender_gives(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)   # no repository here or above
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.delenv(run_provenance.COMMIT_ENV, raising=False)
    assert run_provenance.git_state() == {"commit": None, "dirty": None}
    monkeypatch.setenv(run_provenance.COMMIT_ENV, "0123456789abcdef")
    assert run_provenance.git_state() == {"commit": "0123456789abcdef", "dirty": None}


def test_a_repository_names_its_own_commit_whatever_the_environment_says(monkeypatch):
    monkeypatch.setenv(run_provenance.COMMIT_ENV, "not-this-one")
    state = run_provenance.git_state()
    assert state["commit"] != "not-this-one" and len(state["commit"]) == 40


def test_a_changed_record_does_not_make_the_code_dirty_but_a_changed_module_does(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "metrics.json").write_text("{}")
    (tmp_path / "module.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)
    (tmp_path / "results" / "metrics.json").write_text('{"f1": 0.5}')
    (tmp_path / "results" / "new.json").write_text("{}")
    assert run_provenance.git_state()["dirty"] is False
    (tmp_path / "module.py").write_text("x = 2\n")
    assert run_provenance.git_state()["dirty"] is True
