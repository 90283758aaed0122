import pytest

from openmed_repro.errors import OpenMedError
from openmed_repro.data.iob import read_iob, spans_of


def write(tmp_path, content, name="split.tsv", mode="w"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_reads_sentences_separated_by_blank_lines(tmp_path):
    parsed = read_iob(write(tmp_path, "Lung\tB-Disease\ncancer\tI-Disease\n\nIt\tO\nhurts\tO\n"))
    assert [s.tokens for s in parsed.sentences] == [["Lung", "cancer"], ["It", "hurts"]]
    assert [s.tags for s in parsed.sentences] == [["B-Disease", "I-Disease"], ["O", "O"]]


def test_tolerates_crlf_trailing_whitespace_middle_columns_and_docstart(tmp_path):
    content = (
        "-DOCSTART-\tO\r\n\r\n"
        "Lung\tNN\tx\tB-Disease  \r\n"
        "cancer\tNN\tx\tI-Disease\t\r\n"
        "\r\n   \r\n"
        "-DOCSTART- -X- O O\r\n"
        "Aspirin B-Chemical\r\n"
    )
    parsed = read_iob(write(tmp_path, content))
    assert [s.tokens for s in parsed.sentences] == [["Lung", "cancer"], ["Aspirin"]]
    assert [s.tags for s in parsed.sentences] == [["B-Disease", "I-Disease"], ["B-Chemical"]]
    assert parsed.docstarts == 2


def test_docstart_without_blank_line_still_ends_the_sentence(tmp_path):
    parsed = read_iob(write(tmp_path, "a\tO\n-DOCSTART-\tO\nb\tO\n"))
    assert [s.tokens for s in parsed.sentences] == [["a"], ["b"]]


def test_a_byte_order_mark_is_not_part_of_the_first_token(tmp_path):
    parsed = read_iob(write(tmp_path, "\ufeffAspirin\tB-Chemical\n"))
    assert parsed.sentences[0].tokens == ["Aspirin"]


def test_one_column_line_is_an_error_naming_file_and_line(tmp_path):
    path = write(tmp_path, "a\tO\nlonely\n")
    with pytest.raises(OpenMedError, match=rf"{path}:2: one column"):
        read_iob(path)


@pytest.mark.parametrize("tag", ["E-Disease", "S-Disease", "Disease", "B-", "b-Disease", "U-X"])
def test_unknown_tag_prefix_is_an_error_naming_file_and_line(tmp_path, tag):
    path = write(tmp_path, f"a\tO\n\nb\tO\nc\t{tag}\n")
    with pytest.raises(OpenMedError, match=rf"{path}:4: unknown tag"):
        read_iob(path)


@pytest.mark.parametrize("content, line", [("a\tO\n\tB-Disease\n", 2), ("a\tO\n\u00a0\tO\n", 2)])
def test_an_empty_token_is_an_error_naming_file_and_line(tmp_path, content, line):
    """Found by fuzzing: a line that starts with its tab gave a token "" the tokenizer has no sub-word for."""
    path = write(tmp_path, content)
    with pytest.raises(OpenMedError, match=rf"{path}:{line}: empty token"):
        read_iob(path)


def test_a_carriage_return_inside_a_line_is_an_error_not_a_lost_token(tmp_path):
    """Found by fuzzing: with old Mac line endings "b" vanished into an ignored middle column of "a"'s line."""
    path = write(tmp_path, "x\tO\na\tO\rb\tB-Disease\n")
    with pytest.raises(OpenMedError, match=rf"{path}:2: a carriage return inside the line"):
        read_iob(path)


def test_empty_split_is_an_error(tmp_path):
    path = write(tmp_path, "\n\n  \n")
    with pytest.raises(OpenMedError, match=rf"{path}:1: empty split"):
        read_iob(path)


def test_docstart_only_split_is_empty(tmp_path):
    with pytest.raises(OpenMedError, match="empty split"):
        read_iob(write(tmp_path, "-DOCSTART-\tO\n\n"))


def test_non_utf8_bytes_are_an_error_naming_the_line(tmp_path):
    path = write(tmp_path, "a\tO\nb\tO\n\ncaf\xe9\tO\n".encode("latin-1"))
    with pytest.raises(OpenMedError, match=rf"{path}:4: not UTF-8"):
        read_iob(path)


@pytest.mark.parametrize("content, line", [
    ("a\tI-Disease\n", 1),                     # I- opens a sentence
    ("a\tO\nb\tI-Disease\n", 2),              # I- after O
    ("a\tB-Chemical\nb\tI-Disease\n", 2),     # I- continues another type
])
def test_dangling_inside_tag_is_an_error_by_default(tmp_path, content, line):
    path = write(tmp_path, content)
    with pytest.raises(OpenMedError, match=rf"{path}:{line}: I-Disease follows .* repair=True"):
        read_iob(path)


def test_repair_turns_dangling_inside_tags_into_begin_and_counts_them(tmp_path):
    content = "a\tI-Disease\nb\tI-Disease\nc\tO\nd\tI-Chemical\n\ne\tB-Chemical\nf\tI-Disease\n"
    parsed = read_iob(write(tmp_path, content), repair=True)
    assert parsed.sentences[0].tags == ["B-Disease", "I-Disease", "O", "B-Chemical"]
    assert parsed.sentences[1].tags == ["B-Chemical", "B-Disease"]
    assert parsed.repaired == 3


def test_valid_file_reports_no_repairs(tmp_path):
    parsed = read_iob(write(tmp_path, "a\tB-X\nb\tI-X\nc\tB-X\n"), repair=True)
    assert parsed.repaired == 0


def test_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(OpenMedError, match="nothere.tsv: cannot read"):
        read_iob(tmp_path / "nothere.tsv")


def test_spans_of_iob2_tags_join_a_b_with_its_i_run_and_end_at_o():
    assert spans_of(["B-Disease", "I-Disease", "I-Disease", "O", "B-Chemical", "O"]) == [
        (0, 3, "Disease"), (4, 5, "Chemical")]


def test_spans_of_iob2_tags_keep_adjacent_entities_apart():
    assert spans_of(["B-Disease", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"]) == [
        (0, 1, "Disease"), (1, 3, "Disease"), (3, 5, "Chemical")]


def test_spans_of_iob2_tags_open_an_entity_at_an_i_without_its_b():
    """The lenient reading (seqeval's default, the transformers pipeline's grouping): a predicted I-X after O,
    at the start, or after another type opens an X entity instead of being dropped."""
    assert spans_of(["I-Disease", "I-Disease", "O", "I-Disease"]) == [(0, 2, "Disease"), (3, 4, "Disease")]
    assert spans_of(["B-Disease", "I-Chemical", "I-Chemical", "I-Disease"]) == [
        (0, 1, "Disease"), (1, 3, "Chemical"), (3, 4, "Disease")]


def test_spans_of_iob2_tags_read_types_with_hyphens_and_empty_sentences():
    assert spans_of(["B-Gene-or-protein", "I-Gene-or-protein", "I-Cell-line"]) == [
        (0, 2, "Gene-or-protein"), (2, 3, "Cell-line")]
    assert spans_of([]) == [] and spans_of(("O", "O")) == []
