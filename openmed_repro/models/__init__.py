"""Backbones and model heads: names to models, LoRA targets, the masked-LM loss; the BiLSTM-CNN-Char tagger."""
