"""A trained token classifier made ready to predict in a lower precision than fp32, for annotation and, when
asked, evaluation. bf16 (or fp16 on a GPU): the weights themselves in half precision, so that every matrix
product runs on the bf16 units without a cast per call (measured on a Xeon with AMX: 2.1x fp32, where
autocast gave 1.7x, same entities). int8: the model exported to ONNX, its weight matrices quantized per
output channel and activations per batch at run time (ONNX Runtime's dynamic quantization), run by ONNX
Runtime (measured: 1.9x fp32, where torchao's int8 ran at 0.7x in eager mode). The precision is resolved
first (infra/devices.py); this module only carries it out."""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from pathlib import Path

import torch
from transformers.modeling_outputs import TokenClassifierOutput

from openmed_repro.errors import OpenMedError

HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def prepare(model: torch.nn.Module, precision: str, keep_original: bool = True) -> torch.nn.Module:
    """`model` (a plain model: LoRA merged) to predict in `precision` (fp32, bf16, fp16 or int8): itself for
    fp32, else a copy unless the caller no longer needs the original (`keep_original=False`)."""
    if precision == "fp32":
        return model
    if precision in HALF:
        return (copy.deepcopy(model) if keep_original else model).to(HALF[precision]).eval()
    if precision == "int8":
        return OnnxInt8TokenClassifier(model)
    raise OpenMedError(f"precision {precision!r}: valid here: fp32, {', '.join(HALF)}, int8")


class OnnxInt8TokenClassifier(torch.nn.Module):
    """The model as ONNX Runtime runs it with int8 weights: called like the model (input_ids, attention_mask),
    it answers with fp32 logits. ONNX Runtime uses as many threads as torch."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        try:
            import onnxruntime
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError as error:
            raise OpenMedError("precision int8 needs ONNX Runtime: pip install '.[int8]'") from error
        with tempfile.TemporaryDirectory(prefix="openmed-int8-") as directory:
            exported, quantized = Path(directory) / "model.onnx", Path(directory) / "int8.onnx"
            export_onnx(model, exported)
            # MatMul weights only (not the attention's activation-by-activation products), one scale per row.
            logging.disable(logging.WARNING)   # its advice to pre-process the graph, printed on every call
            try:
                quantize_dynamic(str(exported), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                                 extra_options={"MatMulConstBOnly": True})
            finally:
                logging.disable(logging.NOTSET)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            self.session = onnxruntime.InferenceSession(quantized.read_bytes(), options,
                                                        providers=["CPUExecutionProvider"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> TokenClassifierOutput:
        logits = self.session.run(["logits"], {"input_ids": input_ids.cpu().numpy(),
                                               "attention_mask": attention_mask.cpu().numpy()})[0]
        return TokenClassifierOutput(logits=torch.from_numpy(logits))


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """The model's logits as an ONNX graph whose batch size and length vary (TorchScript exporter: it needs
    only the onnx package)."""
    example = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "length"}
    with warnings.catch_warnings():   # the tracer's notes on shape checks that hold for every encoder input
        warnings.simplefilter("ignore")
        torch.onnx.export(_LogitsOnly(model).eval(), (example, example), str(path), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes}, opset_version=17)
