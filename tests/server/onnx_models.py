"""Small models for the ONNX runtime's tests, and their ONNX forms made with the builder-stage export.

No bge-m3 or cross-encoder fits the test bed (no hub; PyPI ships no small cross-encoder), so two are made from
configs with random weights, shaped like the real ones: a tiny XLM-RoBERTa with bge-m3's random sparse and ColBERT
heads (sparse_linear.pt, colbert_linear.pt, CLS pooling), and a tiny XLM-RoBERTa cross-encoder (num_labels=1,
as bge-reranker-v2-m3). Their word-level tokenizer knows every word of WORDS."""

from __future__ import annotations

import shutil
from pathlib import Path

WORDS = ("the a of to and in is it for on with as at by from this that model models vector vectors text search "
         "bread bake recipe loaf oven tax filing deadline quarterly cat sat mat dog park run query answer rank "
         "dense sparse colbert token weight embedding server image small fast cpu onnx torch python").split()
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids: <s>=0, <pad>=1, </s>=2


def _tokenizer(directory: Path, max_length: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*SPECIAL, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            sep_token="</s>", pad_token="<pad>", cls_token="<s>", mask_token="<mask>",
                            model_max_length=max_length).save_pretrained(directory)


def make_tiny(directory: Path, task: str, seed: int = 0) -> Path:
    """A random-weight XLM-R of bge-m3's shape (task embed, with heads) or a cross-encoder (task rerank)."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, XLMRobertaConfig

    if (directory / "config.json").is_file():
        return directory
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.manual_seed(seed)
    _tokenizer(tmp, 64)
    config = XLMRobertaConfig(vocab_size=len(SPECIAL) + len(WORDS), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64, max_position_embeddings=66,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=1,
                              initializer_range=0.3)  # wider than 0.02: scores that differ, not near-ties
    if task == "rerank":
        AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp)
    else:
        AutoModel.from_config(config).save_pretrained(tmp)
        sparse = torch.nn.Linear(32, 1)
        torch.nn.init.constant_(sparse.bias, 1.0)  # most tokens get a positive weight, as in the real head
        torch.save(sparse.state_dict(), tmp / "sparse_linear.pt")
        torch.save(torch.nn.Linear(32, 32).state_dict(), tmp / "colbert_linear.pt")
    tmp.rename(directory)
    return directory


def exported(src: Path, out: Path, task: str = "embed", quantize: str = "none") -> Path:
    """`src`'s ONNX form through templates/export_onnx.py (in this process: torch is imported once)."""
    from bgeimg.context.onnx import _script

    if not (out / "onnx_export.json").is_file():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _script().run(src, tmp, task, quantize)
        tmp.rename(out)
    return out
