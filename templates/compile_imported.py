"""Builder-stage helper: import what the server imports, then compile exactly those modules to bytecode.

Hash-based .pyc (unchecked: the venv never changes after the build) carry no timestamps, so the layer is
reproducible; modules the server never imports stay source-only, which keeps most of the size a full
`compileall` would add while giving cold start most of its gain.

    python compile_imported.py [--rehearse ARCH[,ARCH...]] MODULE...

--rehearse runs the server's load path on a tiny random model of each architecture
(e.g. bert, xlm-roberta): loading weights imports far more than `import transformers` does (torch.distributed,
sympy, the model's modeling module), and those are the modules a cold start spends its time compiling.
"""

import importlib
import json
import os
import py_compile
import sys
import tempfile

os.environ.setdefault("TRANSFORMERS_NO_TF", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def tiny_model(arch: str, directory: str, task: str) -> None:
    """A model of `arch` small enough to build in a second, saved the way a hub snapshot is."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<s>", "</s>", "<pad>", "<unk>", "hello", "world"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", model_max_length=32)
    fast.save_pretrained(directory)
    config = AutoConfig.for_model(arch, vocab_size=len(words), hidden_size=8, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=16, max_position_embeddings=40,
                                  pad_token_id=0, num_labels=1)
    cls = AutoModelForSequenceClassification if task == "rerank" else AutoModel
    cls.from_config(config).save_pretrained(directory)
    with open(os.path.join(directory, "config.json")) as f:
        json.load(f)  # written and readable: the encoder reads it again


def rehearse(archs: list[str]) -> None:
    """Load and run each tiny model the way bge_server.torch_encoder does (same Auto classes, same calls); kept
    apart from the server code so an app change does not invalidate this step's cache."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    for arch in archs:
        for task in ("embed", "rerank"):
            with tempfile.TemporaryDirectory() as directory:
                tiny_model(arch, directory, task)
                AutoConfig.from_pretrained(directory)
                tokenizer = AutoTokenizer.from_pretrained(directory)
                cls = AutoModelForSequenceClassification if task == "rerank" else AutoModel
                model = cls.from_pretrained(directory, dtype=torch.float32).eval()
                pair = (["hello"], ["world"]) if task == "rerank" else (["hello world"],)
                batch = tokenizer(*pair, padding=True, truncation=True, max_length=16, return_tensors="pt")
                with torch.inference_mode():
                    out = model(**batch)
                    if task == "embed":
                        torch.nn.functional.normalize(out.last_hidden_state[:, 0], dim=-1)
                    else:
                        torch.sigmoid(out.logits)


def main(argv: list[str]) -> None:
    failed = []
    if argv[:1] == ["--rehearse"]:
        archs, argv = argv[1].split(","), argv[2:]
        try:
            rehearse(archs)
        except ModuleNotFoundError as exc:
            if exc.name not in ("torch", "transformers", "tokenizers"):
                sys.exit(f"compile_imported: loading a tiny model failed: {exc}")
            failed.append(f"rehearsal ({exc.name} is not installed)")  # not a transformers server: nothing to load
        except Exception as exc:  # the venv cannot load a model: the server would fail the same way at start
            sys.exit(f"compile_imported: loading a tiny {'/'.join(archs)} model failed, so the server would too: "
                     f"{type(exc).__name__}: {exc}")
    for name in argv:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a module the runtime may not need on this platform: say so, keep going
            failed.append(f"{name} ({type(exc).__name__})")
    prefix = os.path.realpath(sys.prefix)
    count = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py") or not os.path.realpath(source).startswith(prefix):
            continue
        py_compile.compile(source, doraise=False, quiet=2,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        count += 1
    print(f"compiled {count} imported modules" + (f"; missed {', '.join(failed)}" if failed else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
