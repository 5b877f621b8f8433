"""Embedding analytics in `inspect`: norms (and over saved steps), nearest vocabulary tokens, the init text's tokens."""

from __future__ import annotations

import json

from embed_studio.cli import main
from embed_studio.formats.embedding import save_embedding
from embed_studio.train.analytics import init_text_report
from embed_studio.train.create import create_embedding


def test_init_text_against_vectors():
    assert "one token per vector" in init_text_report("black hair", 2, lambda t: 2)
    assert "dropped 1" in init_text_report("black hair", 1, lambda t: 2)
    assert "1 vector(s) started" in init_text_report("hair", 2, lambda t: 1)
    assert "not recorded" in init_text_report(None, 2, None)


def test_inspect_analytics(tmp_path, tiny_model, backend, make_config, capsys):
    from embed_studio.train.loop import train

    path = tmp_path / "mychar.pt"
    save_embedding(create_embedding(backend, "mychar", "black hair", 2), path)
    assert main(["inspect", str(path), "--analytics", "--model", str(tiny_model), "--nearest", "2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)[0]["analytics"]
    # A fresh embedding is its init text's token vectors: each one is nearest to its own token.
    assert [tokens[0][0] for tokens in info["nearest_tokens"]] == ["black", "hair"]
    assert all(tokens[0][1] > 0.999 and len(tokens) == 2 for tokens in info["nearest_tokens"])
    table = backend.text_encoder.get_input_embeddings().weight
    black = table[backend.token_ids("black")[0]].norm().item()
    assert abs(info["norms"][0] - black) < 1e-3
    assert "2 token(s) for 2 vector(s): one token per vector" in info["init_text"]

    train(make_config(path, max_steps=3, save_every=1, lr="0.5"), backend)
    copies = tmp_path / "logs" / "mychar" / "embeddings"
    assert main(["inspect", str(path), "--analytics", "--history", str(copies)]) == 0
    out = capsys.readouterr().out
    assert "norms over 2 saved step(s):" in out and "step 1:" in out and "step 2:" in out
    assert out.index("step 1:") < out.index("step 2:")
    assert main(["inspect", str(path), "--model", str(tiny_model)]) == 1
    assert "go with --analytics" in capsys.readouterr().err
