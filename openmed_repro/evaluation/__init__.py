"""Scores and statistics: strict seqeval metrics, significance tests, comparisons of runs. No torch here."""
