"""Tiny stand-ins for the paper's three backbones, written in their real formats so that the paper's path runs
without the hub: DeBERTa-v3 (a SentencePiece spm.model, no tokenizer.json, no MLM head), PubMedBERT (an uncased
WordPiece vocab.txt, a trained MLM head) and BioELECTRA (an ElectraForPreTraining discriminator, WordPiece).
Every tokenizer is trained here on generated biomedical-looking text; every model is random and tiny."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import torch
from tokenizers import BertWordPieceTokenizer
from transformers import (BertConfig, BertForMaskedLM, DebertaV2Config, DebertaV2Model, ElectraConfig,
                          ElectraForPreTraining)

from conftest import DISEASES, FILLER

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37,
        "max_position_embeddings": 512}
WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TERMS = ["Aspirin", "ibuprofen", "tamoxifen", "BRCA1", "p53", "interleukin-6", "TNF-alpha", "hepatocellular",
         "carcinoma", "glioblastoma", "neuropathy", "cardiomyopathy", "nephrotoxicity", "IC50", "mg/kg", "(n=12)",
         "patients", "randomised", "trial", "placebo", "expression", "mutation", "receptor", "kinase", "mice",
         "Escherichia", "coli", "Staphylococcus", "aureus", "dose-dependent", "apoptosis", "inhibition", "levels"]


SYLLABLES = ["amino", "cyto", "gen", "ase", "ol", "ine", "hepa", "neuro", "card", "io", "itis", "oma", "path",
             "lym", "pho", "glu", "cose", "ster", "oid", "bac", "ter", "ium", "vir", "al", "thy", "rox", "anti",
             "body", "pro", "tein", "nucle", "ic", "acid", "mab", "zole", "pril", "statin", "mycin", "x", "q", "z"]


def training_text(lines: int = 400, seed: int = 0) -> list[str]:
    """Sentences of corpus words, biomedical terms and made-up compounds of medical syllables, cased and
    punctuated as abstracts are: enough distinct pieces for vocabularies of several hundred."""
    rng = random.Random(seed)
    compounds = ["".join(rng.sample(SYLLABLES, rng.randint(2, 4))) for _ in range(400)]
    words = FILLER + [w for mention in DISEASES for w in mention] + TERMS + compounds + [str(n) for n in range(100)]
    text = []
    for _ in range(lines):
        sentence = [rng.choice(words) for _ in range(rng.randint(6, 24))]
        sentence[0] = sentence[0].capitalize()
        text.append(" ".join(sentence) + rng.choice([" .", " ;", " ,", ""]))
    return text


def _seeded(build):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


def deberta_v3(directory: Path) -> Path:
    """microsoft/deberta-v3-large's layout: spm.model, a tokenizer_config.json naming DebertaV2Tokenizer, no
    tokenizer.json, and an encoder saved without any MLM head (the hub checkpoint's head is not usable)."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(training_text()), model_writer=model, vocab_size=600, hard_vocab_limit=False,
        model_type="unigram", character_coverage=1.0, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]",
        user_defined_symbols=["[MASK]"], minloglevel=2)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spm.model").write_bytes(model.getvalue())
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "vocab_type": "spm"}))
    vocab_size = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()
    config = DebertaV2Config(**TINY, vocab_size=vocab_size, relative_attention=True, position_buckets=256,
                             pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
                             position_biased_input=False, max_relative_positions=-1, pad_token_id=0)
    _seeded(lambda: DebertaV2Model(config)).save_pretrained(directory)
    return directory


def _wordpiece(directory: Path, tokenizer_class: str) -> int:
    """An uncased WordPiece vocab.txt with tokenizer_config.json (do_lower_case), no tokenizer.json."""
    directory.mkdir(parents=True, exist_ok=True)
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(training_text(), vocab_size=600, special_tokens=WORDPIECE_SPECIALS)
    trainer.save_model(str(directory))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": tokenizer_class, "do_lower_case": True}))
    return trainer.get_vocab_size()


def pubmedbert(directory: Path) -> Path:
    """microsoft/BiomedNLP-BiomedBERT-large-uncased-abstract's layout: vocab.txt (uncased) and a BERT saved
    with its trained masked-LM head."""
    vocab_size = _wordpiece(directory, "BertTokenizer")
    config = BertConfig(**TINY, vocab_size=vocab_size)
    _seeded(lambda: BertForMaskedLM(config)).save_pretrained(directory)
    return directory


def bioelectra(directory: Path) -> Path:
    """kamalkraj/bioelectra-large-discriminator-pubmed's layout: vocab.txt and an ELECTRA discriminator
    (ElectraForPreTraining: replaced-token detection, no masked-LM head)."""
    vocab_size = _wordpiece(directory, "ElectraTokenizer")
    config = ElectraConfig(**TINY, vocab_size=vocab_size, embedding_size=32)
    _seeded(lambda: ElectraForPreTraining(config)).save_pretrained(directory)
    return directory


STAND_INS = {"deberta-v3-large": deberta_v3, "pubmedbert-large": pubmedbert, "bioelectra-large": bioelectra}
