"""The baseline's sweeps: the start of the word vectors chosen on dev strict F1, never on test."""

from openmed_repro.training import baseline_sweep


def finished_run(corpus: str, start: str, dev: float, test: float) -> dict:
    return {"dataset": corpus, "word_embeddings": start, "devel": {"strict": {"f1": dev}},
            "test": {"strict": {"f1": test}}}


def test_the_start_chosen_for_each_corpus_is_the_best_on_dev_never_on_test():
    table = baseline_sweep.start_choice([
        finished_run("ncbi_disease", "learned", 0.80, 0.85),
        finished_run("ncbi_disease", "minilm-l6", 0.82, 0.79),
        finished_run("ncbi_disease", "word2vec-dapt", 0.81, 0.90),
        finished_run("s800", "learned", 0.70, 0.70),
        finished_run("s800", "word2vec-dapt", 0.70, 0.75),
    ])
    assert list(table.index[table["chosen"]]) == [("ncbi_disease", "minilm-l6"), ("s800", "learned")]  # a tie: first
    assert table.loc[("ncbi_disease", "word2vec-dapt"), "test strict F1"] == 90.0
