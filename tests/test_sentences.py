"""One sentence splitter for annotation (character offsets) and DAPT passages (text)."""

from openmed_repro.data import sentences


def test_words_are_runs_of_letters_and_digits_or_single_punctuation_with_offsets():
    text = "IL-2 (n=3)."
    assert [text[s:e] for s, e in sentences.words(text)] == ["IL", "-", "2", "(", "n", "=", "3", ")", "."]
    assert sentences.words("  Lung\tcancer ")[0] == (2, 6)


def test_a_sentence_ends_at_a_stop_mark_before_a_capital_or_a_digit():
    assert sentences.sentences("Cells died. Mice lived! 3 rats? None.") == [
        "Cells died.", "Mice lived!", "3 rats?", "None."]


def test_a_stop_before_lower_case_or_inside_a_number_does_not_end_a_sentence():
    assert sentences.sentences("Doses of 3.5 mg. were given. the end") == ["Doses of 3.5 mg. were given. the end"]


def test_abbreviations_and_initials_do_not_end_a_sentence():
    text = "Cells of IL-2 (n=3) were e.g. seen. Dr. Smith et al. reported 3.5 mg! Then J. Doe left? See Fig. 2 too."
    assert sentences.sentences(text) == ["Cells of IL-2 (n=3) were e.g. seen.", "Dr. Smith et al. reported 3.5 mg!",
                                         "Then J. Doe left?", "See Fig. 2 too."]


def test_a_sentence_starts_at_a_capital_or_a_digit_not_at_a_bracket_or_a_stop_inside_one():
    assert sentences.sentences("Tumours shrank (Fig. 2). [12] Mice lived (data not shown.) Then 2 died.") == [
        "Tumours shrank (Fig. 2). [12] Mice lived (data not shown.) Then 2 died."]


def test_sentence_words_carry_the_character_offsets_of_the_sentences():
    text = "  Lung cancer kills.  Asthma too. "
    grouped = sentences.sentence_words(text)
    assert [[text[s:e] for s, e in spans] for spans in grouped] == [["Lung", "cancer", "kills", "."],
                                                                    ["Asthma", "too", "."]]
    assert [text[spans[0][0]:spans[-1][1]] for spans in grouped] == sentences.sentences(text)
    assert sentences.sentence_words(" \t ") == [] and sentences.sentences("") == []
