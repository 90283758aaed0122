"""The `openmed-repro` command: one sub-command per job, each with a --help that says what it does, and the
Makefile's targets calling the command rather than library modules."""

import argparse
import re

import pytest

from openmed_repro import cli
from openmed_repro.infra import paths

JOBS = {"search", "baseline", "sweep", "notebook", "audit", "book", "annotate", "corpus-stats", "summary"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def makefile_recipes() -> list[str]:
    """The Makefile's recipe lines, continuation lines joined."""
    text = (paths.PROJECT_ROOT / "Makefile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.startswith("\t")]


def test_every_job_is_a_subcommand():
    assert JOBS <= set(subcommands())


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_subcommand_has_a_help_that_says_what_it_does(name, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([name, "--help"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"usage: openmed-repro {name}")
    assert subcommands()[name].description.split()[0].lower() in printed.lower()


def test_the_top_level_help_lists_every_subcommand_with_its_purpose(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    printed = capsys.readouterr().out
    for name, parser in subcommands().items():
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", printed, re.MULTILINE), name


def test_an_unknown_subcommand_is_refused_naming_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["hpo"])
    assert done.value.code == 2 and "invalid choice: 'hpo'" in capsys.readouterr().err


def test_the_makefile_calls_the_command_and_no_library_module():
    recipes = makefile_recipes()
    assert not [line for line in recipes if "-m openmed_repro" in line]
    called = {re.search(r"openmed-repro (\S+)", line).group(1) for line in recipes if "/openmed-repro " in line}
    assert called and called <= set(subcommands())


def test_the_command_is_the_librarys_only_entry_point():
    sources = sorted((paths.PROJECT_ROOT / "openmed_repro").rglob("*.py"))
    mains = [path.relative_to(paths.PROJECT_ROOT).as_posix() for path in sources
             if re.search(r"^def main\(", path.read_text(), re.MULTILINE)]
    assert mains == ["openmed_repro/cli.py"]
    assert not [path for path in sources if path.name != "cli.py" and "openmed_repro.cli" in path.read_text()]


def test_a_chapter_that_fails_ends_in_its_own_one_line_message_naming_the_executed_notebook(tmp_path, capsys):

    output = tmp_path / "out.ipynb"
    code = cli.main(["notebook", str(paths.PROJECT_ROOT / "notebooks" / "finetune.ipynb"), str(output),
                     "-k", "python3", "-p", "dataset", "ncbi_disease", "-p", "profile", "smoke", "-p", "learning_rate",
                     "fast"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and output.is_file()
    assert error[-1].startswith(f"openmed-repro: error: finetune failed (the executed notebook: {output}): ")
    assert error[-1].endswith("parameter learning_rate must be float, got str 'fast'")
