"""The paper's released checkpoints scored on our test splits: Table 4 checked without training."""
