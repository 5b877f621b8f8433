"""`embed-studio create` and `embed-studio train` from the command line, end to end on a tiny model."""

from embed_studio.cli import main
from embed_studio.formats.embedding import load_embedding
from embed_studio.formats.hypernetwork import load_hypernetwork


def test_create_and_train_embedding(tmp_path, tiny_model, dataset, capsys):
    emb_dir = tmp_path / "embeddings"
    assert (
        main(
            [
                "create",
                "embedding",
                "mychar",
                "--model",
                str(tiny_model),
                "--init-text",
                "red eyes",
                "--vectors",
                "2",
                "--dir",
                str(emb_dir),
            ]
        )
        == 0
    )
    assert load_embedding(emb_dir / "mychar.pt").step == 0
    # Never silently overwritten.
    assert main(["create", "embedding", "mychar", "--model", str(tiny_model), "--dir", str(emb_dir)]) == 1
    assert "already exists" in capsys.readouterr().err
    # Too long an init text: refused with the count.
    assert (
        main(
            [
                "create",
                "embedding",
                "other",
                "--model",
                str(tiny_model),
                "--init-text",
                "black hair, red eyes",
                "--vectors",
                "1",
                "--dir",
                str(emb_dir),
            ]
        )
        == 1
    )
    assert "needs 5 tokens" in capsys.readouterr().err

    code = main(
        [
            "train",
            "embedding",
            "--model",
            str(tiny_model),
            "--dataset",
            str(dataset),
            "--name",
            "mychar",
            "--dir",
            str(emb_dir),
            "--lr",
            "0.01",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--grad-accum",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "--bucket-step",
            "32",
            "--save-every",
            "0",
            "--preview-every",
            "0",
            "--clip-skip",
            "2",
            "--no-shuffle-tags",
            "--log-dir",
            str(tmp_path / "logs"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "step 2/2" in captured.err and "loss" in captured.err
    saved = load_embedding(emb_dir / "mychar.pt")
    assert saved.step == 2 and saved.extra["embed_studio"]["clip_skip"] == 2


def test_bad_schedule_is_a_clear_error(tmp_path, tiny_model, dataset, capsys):
    code = main(
        [
            "train",
            "embedding",
            "--model",
            str(tiny_model),
            "--dataset",
            str(dataset),
            "--name",
            "x",
            "--dir",
            str(tmp_path),
            "--lr",
            "0.01:abc",
        ]
    )
    assert code == 1
    assert "'abc' is not a whole step number" in capsys.readouterr().err


def test_create_hypernetwork_with_model_sizes(tmp_path, tiny_model):
    assert (
        main(
            [
                "create",
                "hypernetwork",
                "hn",
                "--model",
                str(tiny_model),
                "--activation",
                "swish",
                "--layer-norm",
                "--dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    data = load_hypernetwork(tmp_path / "hn.pt")
    assert sorted(data.layers) == [8, 16, 32] and data.activation_func == "swish"
