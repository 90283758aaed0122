"""The training chapters: fine-tuning, DAPT, the BiLSTM-CNN-Char baseline, the ablation and the corpus sweep."""
