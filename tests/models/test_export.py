"""One ONNX graph serves all seven availability conditions, any lengths, any batch."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from models.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from models.cmarr import CMARR, CMARRConfig
from models.export import INPUT_NAMES, example_inputs, export_onnx, main, verify_onnx

TINY = dict(text_dim=10, audio_dim=12, video_dim=7, d_model=16, umc_dim=8, flow_hidden=16, umc_heads=2,
            fusion_heads=2, num_segments=4, rcab_blocks=1, flow_steps=2, rcab_reduction=4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = CMARR(CMARRConfig(**TINY)).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return model, path


def test_export_parity_all_masks_lengths_batches(exported):
    model, path = exported
    report = verify_onnx(model, path, lengths=(1, 5, 23), batches=(1, 4))
    assert report["cases"] == 7 * 3 * 2
    conds = {r["condition"] for r in report["results"]}
    assert conds == {"t", "a", "v", "tv", "av", "ta", "tav"}
    assert {r["lengths"]["text"] for r in report["results"]} == {1, 5, 23}
    assert report["passed"], report["max_abs_diff"]
    assert report["max_abs_diff"] < 1e-4


def test_export_parity_with_the_pooled_skip_path(tmp_path):
    torch.manual_seed(1)
    model = CMARR(CMARRConfig(**TINY, pooled_skip=True, logprob_tail=(0, 0, 3))).eval()
    path = export_onnx(model, tmp_path / "skip.onnx")
    report = verify_onnx(model, path, lengths=(1, 9), batches=(2,))
    assert report["cases"] == 7 * 2 and report["passed"], report["max_abs_diff"]


def test_graph_has_dynamic_batch_and_lengths(exported):
    _, path = exported
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(INPUT_NAMES)
    for i in sess.get_inputs():
        assert not isinstance(i.shape[0], int), f"{i.name} batch is static"
        if i.name != "avail":
            assert not isinstance(i.shape[1], int), f"{i.name} length is static"
    # A length far outside the export example still runs.
    args = example_inputs({"text": 10, "audio": 12, "video": 7}, 3, {"text": 200, "audio": 301, "video": 90},
                          (0, 1, 1))
    logits = sess.run(["logits"], {k: v.numpy() for k, v in zip(INPUT_NAMES, args, strict=True)})[0]
    assert logits.shape == (3, 4) and np.isfinite(logits).all()


def test_checkpoint_round_trip_is_self_describing(tmp_path, exported):
    model, _ = exported
    sha = save_checkpoint(tmp_path / "m.safetensors", model, extra={"norm": {"text": [0.0]}, "note": "x"})
    meta = read_metadata(tmp_path / "m.safetensors")
    assert meta["model_type"] == "cmarr" and meta["config"]["d_model"] == 16
    ck = load_checkpoint(tmp_path / "m.safetensors")
    assert ck.sha256 == sha and ck.extra["note"] == "x" and ck.identity.startswith("cmarr:")
    dims, lengths = {"text": 10, "audio": 12, "video": 7}, {"text": 4, "audio": 6, "video": 3}
    args = example_inputs(dims, 2, lengths, (1, 1, 1))
    with torch.no_grad():
        assert torch.equal(model(*args).logits, ck.model(*args).logits)


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m training.train"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_cli_verify_prints_json(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("\n".join(f"{k}: {v}" for k, v in TINY.items()))
    rc = main(["--config", str(cfg), "--random-init", "--out", str(tmp_path / "t.onnx"), "--verify"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["passed"] and report["cases"] == 42
    assert report["parameters"] == sum(p.numel() for p in CMARR(CMARRConfig(**TINY)).parameters())


def test_verify_fails_above_tolerance(exported):
    model, path = exported
    report = verify_onnx(model, path, tolerance=0.0, lengths=(3,), batches=(2,))
    # onnxruntime and torch differ by float round-off, so a zero tolerance must report failure.
    assert report["max_abs_diff"] > 0.0 and not report["passed"]


class _Branching(torch.nn.Module):
    """A fusion model that branches on availability with torch.cond: the tracer cannot take it (or
    bakes the example's branch), torch.export keeps both branches."""

    OUTPUT_NAMES = ("logits", "representation")  # a fusion model family names its graph's outputs

    def __init__(self) -> None:
        super().__init__()
        self.config = CMARRConfig(**TINY)
        self.text_head = torch.nn.Linear(10, 4)
        self.audio_head = torch.nn.Linear(12, 4)

    def forward(self, text, text_mask, audio, audio_mask, video, video_mask, avail):  # noqa: ANN001
        pooled_t, pooled_a = text.mean(1), audio.mean(1)
        logits = torch.cond(
            avail[:, 0].min() > 0,
            lambda t, a: self.text_head(t),
            lambda t, a: self.audio_head(a),
            (pooled_t, pooled_a),
        )

        class Out:
            pass

        out = Out()
        out.logits = logits + video.mean((1, 2))[:, None] * 0
        out.representation = pooled_t
        return out


def test_auto_export_traces_a_fusion_model_and_checks_the_trace(tmp_path, caplog):
    torch.manual_seed(2)
    model = CMARR(CMARRConfig(**TINY)).eval()
    with caplog.at_level("INFO", logger="models.export"):
        path = export_onnx(model, tmp_path / "auto.onnx")
    assert "exported by torchscript" in caplog.text and "differs" not in caplog.text
    from models.export import trace_checks_out

    assert trace_checks_out(model, path) < 1e-4
    assert verify_onnx(model, path, lengths=(1, 40), batches=(3,))["passed"]


def test_auto_export_falls_back_to_torch_export_when_the_tracer_cannot_take_the_model(tmp_path, caplog):
    model = _Branching().eval()
    with pytest.raises(RuntimeError):
        export_onnx(model, tmp_path / "traced.onnx", exporter="torchscript")
    with caplog.at_level("INFO", logger="models.export"):
        path = export_onnx(model, tmp_path / "auto.onnx")
    assert "the tracer failed" in caplog.text and "exported by dynamo" in caplog.text
    from models.export import trace_checks_out

    assert trace_checks_out(model, path) < 1e-4  # both branches: text present and text missing
    with pytest.raises(ValueError, match="exporter must be one of"):
        export_onnx(model, tmp_path / "x.onnx", exporter="jit")


def test_a_model_that_names_no_outputs_is_refused_before_export(tmp_path):
    class Unnamed(_Branching):
        OUTPUT_NAMES = ()

    with pytest.raises(TypeError, match="declares no OUTPUT_NAMES starting with 'logits'"):
        export_onnx(Unnamed().eval(), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


class _PythonBranch(_Branching):
    """The same branch written as a Python ``if`` on a tensor's value: no exporter can keep both."""

    def forward(self, text, text_mask, audio, audio_mask, video, video_mask, avail):  # noqa: ANN001
        out = super().forward(text, text_mask, audio, audio_mask, video, video_mask, avail)
        if bool(avail[:, 0].min() > 0):
            out.logits = out.logits + 1.0
        return out


def test_auto_export_refuses_a_model_no_exporter_captures(tmp_path, caplog):
    model = _PythonBranch().eval()
    with caplog.at_level("INFO", logger="models.export"), pytest.raises(ValueError, match="torch.cond"):
        export_onnx(model, tmp_path / "auto.onnx")
    assert not (tmp_path / "auto.onnx").exists()
