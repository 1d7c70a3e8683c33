"""The qwen2.5-vl teacher end to end on a tiny random Qwen2.5-VL built offline and loaded from a folder."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from edgecore.errors import UserError  # noqa: E402
from compress.teachers import vlm_scoring  # noqa: E402
from compress.teachers.calibration import calibration  # noqa: E402
from compress.teachers.qwen_vl import QwenVLTeacher  # noqa: E402
from compress.teachers.spatial_mllm import image_tchw, missing_requirements  # noqa: E402

CLASSES = ["basic", "burnt", "combined", "mixed", "progression", "segment"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tiny_qwen_vl):
    import torch

    torch.set_num_threads(1)
    return tiny_qwen_vl  # conftest.py: built once per session for CLASSES


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)


def test_scores_are_probabilities_per_order(tiny, images):
    t = QwenVLTeacher(CLASSES, tiny, seed=0, batch_size=2)
    s = t.score(images)
    assert s.shape == (5, len(CLASSES), len(CLASSES)) and s.dtype == np.float32
    assert np.allclose(s.sum(axis=2), 1.0, atol=1e-5)
    p = t.predict_proba(images)
    assert p.shape == (5, len(CLASSES))
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    # Different images get different answers: the image really reaches the language model.
    assert np.abs(s[0] - s[1]).max() > 1e-4


@pytest.fixture
def processor(tiny, monkeypatch):
    """Qwen2_5_VLProcessor built from the checkpoint's tokenizer and image processor. Its video part needs
    torchvision, absent here and unused for images: only that part's class check is skipped."""
    from transformers import AutoTokenizer, Qwen2_5_VLProcessor

    from compress.teachers.qwen_vl import _image_processor_class

    check = Qwen2_5_VLProcessor.check_argument_for_proper_class
    monkeypatch.setattr(Qwen2_5_VLProcessor, "check_argument_for_proper_class",
                        lambda self, name, arg: None if arg is None else check(self, name, arg))
    tokenizer = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    return Qwen2_5_VLProcessor(image_processor=_image_processor_class().from_pretrained(tiny),
                               tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def _canonical(model, processor, text: str, image: np.ndarray, drop: str | None = None):
    """`model(**processor(text=[text], images=[image]))`: last-position logits of one sequence."""
    import torch
    from PIL import Image

    inputs = processor(text=[text], images=[Image.fromarray(image)], return_tensors="pt")
    assert set(inputs) == {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"}
    with torch.inference_mode():
        return model(**{n: v for n, v in inputs.items() if n != drop}).logits[0, -1]


def test_adapter_logits_equal_the_canonical_processor_call(tiny, processor):
    """The adapter (each image encoded once, the K question tails run over its KV cache) against the documented
    call, one sequence at a time: `inputs = Qwen2_5_VLProcessor(...)(text=[prompt], images=[image])`,
    `model(**inputs)`. Every input the processor produces reaches the model, or the logits differ."""
    import torch

    teacher = QwenVLTeacher(CLASSES, tiny, seed=0, batch_size=2)
    # Tall images (an 8 x 4 patch grid): the image tokens' 3-D (t, h, w) rotary positions differ from 1-D ones.
    imgs = np.random.default_rng(1).integers(0, 256, (3, 90, 30, 3), dtype=np.uint8)
    logits = teacher.last_logits(imgs)
    assert logits.shape == (3, len(CLASSES), len(teacher.tokenizer))
    without_type_ids = 0.0
    for i, img in enumerate(imgs):
        for k, order in enumerate(teacher.orders):
            messages = [{"role": "user", "content": [
                {"type": "image"}, {"type": "text", "text": vlm_scoring.question(CLASSES, order)}]}]
            text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            canonical = _canonical(teacher.model, processor, text, img)
            torch.testing.assert_close(logits[i, k], canonical, atol=1e-4, rtol=1e-4)
            partial = _canonical(teacher.model, processor, text, img, drop="mm_token_type_ids")
            without_type_ids = max(without_type_ids, float((partial - canonical).abs().max()))
    # What the adapter computed before mm_token_type_ids was passed (1-D image positions) is far off.
    assert without_type_ids > 0.1


def test_question_tails_of_different_lengths(tiny, processor, images):
    """Tails of unequal length are padded between the cached prefix and the tail; positions and the answer
    position stay those of each unpadded sequence."""
    import torch

    from compress.teachers.qwen_vl import IMAGE_PAD

    teacher = QwenVLTeacher(CLASSES, tiny, seed=0, batch_size=2, orders=3)
    teacher._load()
    teacher.tails = tuple(tail.replace("Answer", "Answer with one word . " * k + "Answer")
                          for k, tail in enumerate(teacher.tails))
    assert len({len(teacher.tokenizer(tail)["input_ids"]) for tail in teacher.tails}) == 3
    logits = teacher.last_logits(images[:2])
    for i, img in enumerate(images[:2]):
        for k, tail in enumerate(teacher.tails):
            canonical = _canonical(teacher.model, processor, teacher.head + IMAGE_PAD + tail, img)
            torch.testing.assert_close(logits[i, k], canonical, atol=1e-4, rtol=1e-4)


def test_each_image_goes_through_the_vision_encoder_once(tiny, images):
    t = QwenVLTeacher(CLASSES, tiny, seed=0, batch_size=2)
    t._load()
    rows = []
    t.model.model.visual.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    t.score(images)
    per_image = int(t.image_processor(images=list(images[:1]), return_tensors="pt")["image_grid_thw"].prod())
    assert sum(rows) == len(images) * per_image  # not x 6 option orders


def test_cache_key_follows_what_changes_the_labels(tiny):
    key = QwenVLTeacher(CLASSES, tiny, seed=0).cache_key()
    assert QwenVLTeacher(CLASSES, tiny, seed=0).cache_key() == key
    assert QwenVLTeacher(CLASSES, tiny, seed=1).cache_key() != key  # other option orders
    assert QwenVLTeacher(CLASSES, tiny, seed=0, orders=2).cache_key() != key
    assert QwenVLTeacher(CLASSES, tiny, seed=0, image_size=56).cache_key() != key
    assert QwenVLTeacher(CLASSES[::-1], tiny, seed=0).cache_key() != key  # another prompt
    assert QwenVLTeacher(CLASSES, tiny, seed=0, batch_size=9).cache_key() == key


def test_permutation_averaging(tiny, images):
    """Each option order is a different question; the label is the mean over the orders."""
    permuted = QwenVLTeacher(CLASSES, tiny, seed=3, batch_size=5)
    fixed = QwenVLTeacher(CLASSES, tiny, seed=3, batch_size=5, orders=1)
    assert (fixed.orders[0] == permuted.orders[0]).all()
    per_order = permuted.score(images)
    # A Latin square: every class is offered once at every position.
    assert all(sorted(col) == list(range(len(CLASSES))) for col in permuted.orders.T)
    assert np.abs(per_order[:, 0] - per_order[:, 1]).max() > 1e-4  # the order changes the answer
    np.testing.assert_allclose(fixed.predict_proba(images), per_order[:, 0], atol=1e-6)
    np.testing.assert_allclose(permuted.predict_proba(images), per_order.mean(axis=1), atol=1e-6)
    assert np.abs(permuted.predict_proba(images) - fixed.predict_proba(images)).max() > 1e-4


def test_seeded_orders_and_prompt():
    a, b = vlm_scoring.option_orders(6, 4, seed=1), vlm_scoring.option_orders(6, 4, seed=1)
    assert (a == b).all() and a.shape == (4, 6)
    assert not (vlm_scoring.option_orders(6, 4, seed=2) == a).all()
    assert vlm_scoring.question(["well_done", "burnt"], [1, 0]) == \
        "Which of these describes the pizza: burnt or well done? Answer with one word."
    with pytest.raises(UserError, match="--teacher-orders"):
        vlm_scoring.option_orders(6, 7, seed=0)


def test_class_tokens_must_differ(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    ids = vlm_scoring.class_token_ids(tok, CLASSES)
    assert len({i for group in ids for i in group}) == sum(len(g) for g in ids)
    with pytest.raises(UserError, match="no token"):
        vlm_scoring.class_token_ids(tok, ["basic", "calzone"])



def test_shared_first_tokens():
    """Multi-word names are scored by their first word; a first word two classes share is not evidence."""
    from compress.teachers.tiny_qwen_vl import build_tokenizer

    tok = build_tokenizer(["well_done", "well_burnt", "burnt", "raw"])
    ids = vlm_scoring.class_token_ids(tok, ["burnt", "raw"])
    assert tok.convert_ids_to_tokens([i for g in ids for i in g]) == ["burnt", "raw"]
    with pytest.raises(UserError, match="'well_done' starts with the same token as another class"):
        vlm_scoring.class_token_ids(tok, ["well_done", "well_burnt", "raw"])


def test_calibration_numbers():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    labels = np.array([0, 1, 1, 0])
    cal = calibration(probs, labels, n_bins=10)
    assert cal["accuracy"] == 0.75
    assert cal["mean_confidence"] == pytest.approx(0.75)
    # bins: 0.9 -> [1 correct], 0.8 -> [0 correct], 0.7 -> [1], 0.6 -> [1]
    assert cal["ece"] == pytest.approx((0.1 + 0.8 + 0.3 + 0.4) / 4)


def test_bad_checkpoint_is_one_line(tmp_path, tiny):
    with pytest.raises(UserError, match="config.json missing"):
        QwenVLTeacher(CLASSES, tmp_path)
    with pytest.raises(UserError, match="--teacher-model"):
        QwenVLTeacher(CLASSES, None)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(UserError, match="'llama' model"):
        QwenVLTeacher(CLASSES, tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(UserError, match="cannot load the qwen2.5-vl checkpoint .*model.safetensors"):
        QwenVLTeacher(CLASSES, broken).predict_proba(np.zeros((1, 56, 56, 3), np.uint8))


def test_spatial_mllm_reports_what_is_missing(tiny):
    from compress.teachers.spatial_mllm import SpatialMLLMTeacher

    missing = missing_requirements(None)
    assert any("source code" in m for m in missing)
    # This environment has transformers 5, not the 4.51.3 upstream pins: the packages to install are named.
    assert any(m.startswith("transformers==4.51.3 (found 5.") for m in missing)
    with pytest.raises(UserError) as e:
        SpatialMLLMTeacher(CLASSES, tiny)
    assert "\n" not in str(e.value) and "Spatial-MLLM" in str(e.value)
    assert "pip install transformers==4.51.3 accelerate deepspeed einops" in str(e.value)


@pytest.fixture
def spatial_ready(monkeypatch):
    """Pretend the spatial-mllm environment is complete, to reach the checkpoint and import checks."""
    from compress.teachers import spatial_mllm

    monkeypatch.setattr(spatial_mllm, "missing_requirements", lambda root: [])
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield spatial_mllm.SpatialMLLMTeacher
    for name in set(sys.modules) - before:
        del sys.modules[name]


def _config_copy(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**cfg, **changes}))
    return dst


def test_spatial_mllm_accepts_only_v1_1_checkpoints(tiny, tmp_path, spatial_ready):
    """v1.0 (Spatial-MLLM-subset-sft) and plain Qwen2.5-VL checkpoints say model_type qwen2_5_vl: refused
    up front in one line naming what is supported, not with a KeyError deep in upstream's code."""
    with pytest.raises(UserError) as e:
        spatial_ready(CLASSES, tiny, repo_root=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "v1.0" in msg and "--teacher qwen2.5-vl" in msg
    assert "supports Spatial-MLLM v1.1 checkpoints (model_type 'spatial-mllm'" in msg
    no_connector = _config_copy(tiny, tmp_path / "no-connector", model_type="spatial-mllm")
    with pytest.raises(UserError, match="holds a 'spatial-mllm' model; the spatial-mllm teacher supports .*v1.1"):
        spatial_ready(CLASSES, no_connector, repo_root=str(tmp_path))


def test_spatial_mllm_import_failure_names_the_extra(tiny, tmp_path, spatial_ready):
    """Upstream's VGGT imports itself as `vggt` from src/qwenvl/external: the adapter puts that folder on
    sys.path (else: "No module named 'vggt'"), and a package missing below it is blamed on the extra,
    not on a requirements.txt upstream does not have."""
    root = tmp_path / "Spatial-MLLM"
    (root / "src/qwenvl/model").mkdir(parents=True)
    (root / "src/qwenvl/model/spatial_mllm.py").write_text("import vggt\n")
    (root / "src/qwenvl/external/vggt").mkdir(parents=True)
    (root / "src/qwenvl/external/vggt/__init__.py").write_text("import einops_not_installed\n")
    v11 = _config_copy(tiny, tmp_path / "v1.1", model_type="spatial-mllm",
                       connector_config={"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1})
    teacher = spatial_ready(CLASSES, v11, repo_root=str(root))
    with pytest.raises(UserError) as e:
        teacher.predict_proba(np.zeros((1, 56, 56, 3), np.uint8))
    msg = str(e.value)
    assert "No module named 'einops_not_installed'" in msg and "pip install transformers==4.51.3" in msg
    assert "\n" not in msg and "requirements.txt" not in msg


def test_spatial_mllm_image_tensor():
    """image_tchw mirrors Qwen's still-image handling: grid x patch pixels, [0, 1], temporal_patch_size frames."""
    import torch
    from PIL import Image

    img = Image.fromarray(np.full((60, 50, 3), 255, np.uint8))
    (t,) = image_tchw([img], torch.tensor([[1, 4, 2]]), patch_size=14, temporal_patch_size=2)
    assert t.shape == (2, 3, 56, 28) and t.dtype == torch.float32
    assert float(t.min()) == 1.0 and float(t.max()) == 1.0


def test_order_report_finds_a_position_bias():
    """A model that always answers the first option: every pick is at position 0, orders disagree."""
    orders = vlm_scoring.option_orders(3, 3, seed=0)
    per_order = np.zeros((4, 3, 3), np.float32)
    for k, order in enumerate(orders):
        per_order[:, k, order[0]] = 1.0
    rep = vlm_scoring.order_report(per_order, orders, np.array([0, 1, 2, 0]))
    assert rep["position_pick_rate"] == [1.0, 0.0, 0.0]
    assert rep["order_agreement"] == 0.0
    assert len(rep["order_accuracy"]) == 3


def test_diagnose_on_labelled_images(tiny, images):
    rep = QwenVLTeacher(CLASSES, tiny, seed=0, batch_size=5).diagnose(images, np.array([0, 1, 2, 3, 4]))
    assert set(rep) == {"accuracy", "mean_confidence", "ece", "position_pick_rate", "order_agreement",
                        "order_accuracy"}
    assert sum(rep["position_pick_rate"]) == pytest.approx(1.0, abs=1e-3) and len(rep["order_accuracy"]) == len(CLASSES)
    assert 1 / len(CLASSES) <= rep["mean_confidence"] <= 1 and 0 <= rep["ece"] <= 1


# --- through the teach stage and into the student ----------------------------------------------------

def _vlm_label(run, model) -> dict:
    from test_teach import label

    return label(run, teacher="qwen2.5-vl", teacher_model=model, teacher_vlm_size=56, teacher_vlm_batch=3,
                 teacher_orders=2, teacher_threads=1)


@pytest.fixture(scope="module")
def vlm_run(tmp_path_factory, tiny):
    from test_teach import make_data

    run = tmp_path_factory.mktemp("vlm-run")
    make_data(run)
    metrics = _vlm_label(run, tiny)
    return run, metrics


def test_teach_stage_labels_every_image(vlm_run):
    from compress import data

    run, m = vlm_run
    with np.load(run / "teacher" / "soft_labels.npz") as z:
        hashes, probs, classes = list(z["hashes"]), z["probs"], list(z["classes"])
    ds = data.load_dataset(run)
    assert classes == ds.classes and hashes == sorted({it["sha256"] for it in ds.items})
    assert probs.dtype == np.float32 and probs.shape == (len(hashes), len(CLASSES))
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert m["teacher"] == "qwen2.5-vl" and m["teacher_labelled_now"] == len(hashes)
    assert 0 <= m["teacher_val_ece"] <= 1 and len(m["teacher_val_position_pick_rate"]) == len(CLASSES)
    assert len(m["teacher_val_order_accuracy"]) == 2


def test_teach_stage_resumes_an_interrupted_run(vlm_run, tiny, monkeypatch):
    run, _ = vlm_run
    out = run / "teacher" / "soft_labels.npz"
    reference = out.read_bytes()
    with monkeypatch.context() as mp:  # all cached: the model is not even loaded
        mp.setattr(QwenVLTeacher, "_load_model", lambda *a: pytest.fail("model loaded for a cached run"))
        m = _vlm_label(run, tiny)
    assert m["teacher_labelled_now"] == 0 and out.read_bytes() == reference

    shutil.rmtree(run / "teacher" / "cache")
    out.unlink()
    real, calls = QwenVLTeacher.predict_proba, []

    def interrupted(self, images):
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the third chunk
        calls.append(len(images))
        return real(self, images)

    monkeypatch.setattr(QwenVLTeacher, "predict_proba", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _vlm_label(run, tiny)
    assert not out.exists()
    monkeypatch.setattr(QwenVLTeacher, "predict_proba", real)
    m = _vlm_label(run, tiny)
    assert m["teacher_labelled_cached"] == sum(calls) == 16 and m["teacher_labelled_now"] == 36 - 16
    assert out.read_bytes() == reference


def test_cli_acceptance_command(vlm_run, tiny):
    """`python -m compress teach --teacher qwen2.5-vl --model PATH`, as a user types it."""
    run, _ = vlm_run
    cmd = [sys.executable, "-m", "compress", "teach", "--run", str(run), "--teacher", "qwen2.5-vl",
           "--model", str(tiny), "--teacher-vlm-size", "56", "--teacher-orders", "2", "--teacher-vlm-batch", "3"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "teacher_val_order_agreement" in r.stdout
    r = subprocess.run(cmd[:-6] + ["--model", str(run)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("error: no checkpoint at") and "Traceback" not in r.stderr
    # spatial-mllm outside its environment (no upstream checkout, transformers 5): one line naming what to install.
    cmd[cmd.index("qwen2.5-vl")] = "spatial-mllm"
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "SPATIAL_MLLM_ROOT": ""})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: the spatial-mllm teacher needs transformers==4.51.3")
    assert "its source code (clone https://github.com/diankun-wu/Spatial-MLLM" in r.stderr


def test_student_distils_from_vlm_labels(vlm_run):
    from _tiny_run import distill_config

    from compress import distill

    run, _ = vlm_run
    m = distill.distill_run(run, distill_config(student_epochs=1))
    assert (run / "student" / "student_float.pt").is_file() and (run / "student" / "baseline_float.pt").is_file()
    assert 0.0 <= m["student_float_acc"] <= 1.0 and 0.0 <= m["teacher_student_agreement"] <= 1.0
