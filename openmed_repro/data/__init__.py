"""Corpora and text: the registry, IOB files, verified downloads, sub-word windows, the DAPT text, the paper's figures."""
