"""Only a complete checkpoint is resumed: one cut short while it was written is moved aside, said in one line."""

import json

import torch
from safetensors.torch import save_file

from openmed_repro.infra import checkpoints


def complete_checkpoint(directory, step):
    path = directory / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.ones(4, 4)}, path / "adapter_model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (path / name).write_bytes(b"saved")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_the_last_complete_checkpoint_is_taken(tmp_path):
    complete_checkpoint(tmp_path, 84)
    last = complete_checkpoint(tmp_path, 168)
    assert checkpoints.last_complete(tmp_path) == str(last)


def test_a_checkpoint_without_its_trainer_state_is_moved_aside_and_the_one_before_taken(tmp_path):
    before = complete_checkpoint(tmp_path, 84)
    killed = complete_checkpoint(tmp_path, 168)
    (killed / "trainer_state.json").unlink()
    said = []
    assert checkpoints.last_complete(tmp_path, said.append) == str(before)
    assert not killed.exists() and (tmp_path / "checkpoint-168.incomplete").is_dir()
    assert said == [f"{killed}: incomplete (no trainer_state.json), moved aside to checkpoint-168.incomplete; "
                    "resuming from the checkpoint before it"]


def test_a_weights_file_cut_short_makes_its_checkpoint_incomplete(tmp_path):
    killed = complete_checkpoint(tmp_path, 84)
    weights = killed / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert checkpoints.incomplete(killed) == "adapter_model.safetensors cut short"
    assert checkpoints.last_complete(tmp_path, lambda line: None) is None


def test_no_checkpoint_folder_means_a_fresh_start(tmp_path):
    assert checkpoints.last_complete(tmp_path / "checkpoints") is None
