"""The masked-positions MLM loss is the stock models' loss, with the same gradients, for every known head."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForMaskedLM

from openmed_repro.models import masked_lm

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "vocab_size": 101, "max_position_embeddings": 64}


def tiny_masked_lm(model_type: str):
    extra = {"embedding_size": 32} if model_type == "electra" else {}
    if model_type == "deberta-v2":
        extra = {"legacy": False}
    torch.manual_seed(0)
    return AutoModelForMaskedLM.from_config(AutoConfig.for_model(model_type, **TINY, **extra)).eval()


def batch():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 101, (3, 12), generator=generator)
    labels = torch.full_like(input_ids, -100)
    labels[0, 2], labels[1, 5], labels[1, 7], labels[2, 11] = 7, 8, 9, 10
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 9:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.mark.parametrize("model_type", ["bert", "deberta-v2", "electra"])
def test_masked_positions_loss_equals_the_models_own_loss_and_gradients(model_type):
    model = tiny_masked_lm(model_type)
    assert masked_lm.vocabulary_head(model) is not None
    inputs = batch()
    reference = model(**inputs).loss
    reference.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    total, count = masked_lm.loss_sum(model, inputs)
    assert count == 4
    (total / count).backward()
    assert (total / count).item() == pytest.approx(reference.item(), rel=1e-5)
    for name, grad in expected.items():
        assert torch.allclose(model.get_parameter(name).grad, grad, atol=1e-6), name


def test_masked_positions_loss_goes_through_the_lora_layers_of_a_peft_model():
    model = tiny_masked_lm("bert")
    lora = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"]))
    for name, parameter in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)  # a trained adapter: B is no longer zero
    inputs = batch()
    total, count = masked_lm.loss_sum(lora, inputs)
    assert (total / count).item() == pytest.approx(lora(**inputs).loss.item(), rel=1e-5)
    with lora.disable_adapter():
        assert (total / count).item() != pytest.approx(lora(**inputs).loss.item(), rel=1e-5)


def test_an_unknown_head_falls_back_to_the_models_forward_pass():
    model = tiny_masked_lm("bert")
    inputs = batch()
    reference = model(**inputs).loss.item()
    model.cls_renamed = model.cls
    del model.cls
    model.forward = lambda **kw: type("Out", (), {"logits": model.cls_renamed(model.bert(**kw)[0])})()
    assert masked_lm.vocabulary_head(model) is None
    total, count = masked_lm.loss_sum(model, inputs)
    assert (total / count).item() == pytest.approx(reference, rel=1e-5)


def test_per_row_loss_sums_add_up_to_the_batch_loss_and_count_each_rows_masked_tokens():
    model = tiny_masked_lm("bert")
    inputs = batch()
    with torch.no_grad():
        total, count = masked_lm.loss_sum(model, inputs)
        sums, counts = masked_lm.loss_sums_per_row(model, inputs)
    assert counts == [1, 2, 1]
    assert sum(sums) == pytest.approx(total.item(), rel=1e-5)
    single = {k: v[1:2] for k, v in inputs.items()}
    with torch.no_grad():
        alone, _ = masked_lm.loss_sum(model, single)
    assert sums[1] == pytest.approx(alone.item(), rel=1e-4)


def test_the_masked_positions_trainer_computes_in_the_precision_its_arguments_ask_for(tmp_path):
    from transformers import TrainingArguments

    model = tiny_masked_lm("bert").train()
    seen = []
    query = model.bert.encoder.layer[0].attention.self.query   # a linear layer: bf16 under autocast
    query.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    features = [{k: v[i] for k, v in batch().items()} for i in range(3)]
    for bf16, expected in ((True, torch.bfloat16), (False, torch.float32)):
        seen.clear()
        arguments = TrainingArguments(str(tmp_path / str(bf16)), max_steps=1, per_device_train_batch_size=3,
                                      bf16=bf16, use_cpu=True, report_to="none", save_strategy="no")
        trainer = masked_lm.MaskedPositionsTrainer(model=model, args=arguments, train_dataset=features,
                                                   data_collator=lambda rows: {k: torch.stack([r[k] for r in rows])
                                                                               for k in rows[0]})
        trainer.train()
        assert seen and set(seen) == {expected}
