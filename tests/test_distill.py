"""Student shapes/MACs, BN folding, KD loss maths, deterministic + resumable training, the baseline, distill errors."""
import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compress import distill
from compress.camera import augment
from compress.distill import TrainParams, kd_loss, train_student
from edgecore.errors import UserError
from compress.student import Student, StudentConfig, count_macs, count_params, fold_bn, layer_specs, same_pad
import _tiny_run


def _loss(logits, teacher, label, t, alpha):
    return float(kd_loss(torch.tensor([logits]), torch.tensor([teacher]), torch.tensor([label]), t, alpha))


def test_kd_loss_known_values():
    # T=1, student p = [3/4, 1/4], teacher [1/2, 1/2]: KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3); CE(label 0) = ln(4/3)
    logits = [math.log(3.0), 0.0]
    assert _loss(logits, [0.5, 0.5], 0, 1.0, 1.0) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-6)
    assert _loss(logits, [0.5, 0.5], 0, 1.0, 0.0) == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert _loss(logits, [0.5, 0.5], 1, 1.0, 0.25) == pytest.approx(0.25 * 0.5 * math.log(4 / 3) + 0.75 * math.log(4),
                                                                   rel=1e-6)
    # T=2 softens the teacher [0.8, 0.2] to [2/3, 1/3]; student logits [2 ln 2, 0] give the same at T=2: KL = 0
    assert _loss([2 * math.log(2.0), 0.0], [0.8, 0.2], 0, 2.0, 1.0) == pytest.approx(0.0, abs=1e-6)
    # T^2 scaling: at T=2, student [0, 0] vs softened teacher [2/3, 1/3] -> 4 * KL([2/3,1/3] || [1/2,1/2])
    kl = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)
    assert _loss([0.0, 0.0], [0.8, 0.2], 0, 2.0, 1.0) == pytest.approx(4 * kl, rel=1e-6)


def test_kd_loss_gradient_matches_hinton_at_high_temperature():
    # d(T^2 KL)/dz = T (p_s - p_t) for the softened distributions
    z = torch.tensor([[1.0, -0.5, 0.3]], requires_grad=True)
    p = torch.tensor([[0.6, 0.1, 0.3]])
    kd_loss(z, p, torch.tensor([0]), 3.0, 1.0).backward()
    expect = 3.0 * (F.softmax(z.detach() / 3, 1) - F.softmax(torch.log(p) / 3, 1))
    assert torch.allclose(z.grad, expect, atol=1e-6)


def test_kd_loss_has_no_hard_term_for_the_unlabeled_pool():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    teacher = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    both = float(kd_loss(logits, teacher, torch.tensor([0, -1]), 1.0, 0.0))
    assert both == pytest.approx(math.log(4 / 3), rel=1e-6)  # CE of the labelled row only
    assert float(kd_loss(logits, teacher, torch.tensor([-1, -1]), 1.0, 0.0)) == 0.0


def test_default_student_size_and_macs():
    cfg = StudentConfig()
    specs = layer_specs(cfg)
    assert [(s.kind, s.out_hw, s.cout) for s in specs[:3]] == [("conv", 48, 8), ("dw", 24, 8), ("pw", 24, 16)]
    assert specs[0].macs == 48 * 48 * 8 * 3 * 3 * 3
    assert specs[1].macs == 24 * 24 * 8 * 9
    assert count_macs(cfg) == 1_148_928
    folded = fold_bn(Student(cfg).eval())
    assert count_params(cfg) == sum(p.numel() for p in folded.parameters()) == 10_150
    assert count_macs(StudentConfig(width=0.5)) < count_macs(cfg)


def test_same_padding_is_tf_same():
    assert same_pad(96, 3, 2) == (0, 1)  # TF puts the extra row after, torch padding=1 would be symmetric
    assert same_pad(25, 3, 2) == (1, 1)
    assert same_pad(12, 3, 1) == (1, 1)
    assert same_pad(12, 1, 1) == (0, 0)


def test_fold_bn_computes_the_same_function():
    torch.manual_seed(0)
    cfg = StudentConfig(input_size=32)
    model = Student(cfg)
    for layer in model.features:  # non-trivial BN statistics
        layer.bn.running_mean.uniform_(-0.2, 0.2)
        layer.bn.running_var.uniform_(0.5, 2.0)
        layer.bn.weight.data.uniform_(0.5, 1.5)
        layer.bn.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    folded = fold_bn(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(4, 3, 32, 32)
    h = x  # the folded network written out by hand: TF 'same' pads, conv + bias, ReLU6, mean, linear
    for layer in folded.features:
        spec = layer.spec
        top, bottom = same_pad(h.shape[-1], spec.kernel, spec.stride)
        h = F.relu6(F.conv2d(F.pad(h, (top, bottom, top, bottom)), layer.conv.weight, layer.conv.bias,
                             spec.stride, 0, 1, spec.groups))
    out = F.linear(h.mean((2, 3)), folded.fc.weight, folded.fc.bias)
    assert torch.allclose(out, model(x), atol=1e-5)


def test_augment_is_seeded_and_in_range():
    x = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_js_divergence_known_values():
    # p = [3/4, 1/4], q = [1/4, 3/4]: m = [1/2, 1/2], JS = KL(p || m) = 3/4 ln(3/2) + 1/4 ln(1/2)
    a, b = torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, math.log(3.0)]])
    expect = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(distill.js_divergence(a, b)) == pytest.approx(expect, rel=1e-6)
    assert float(distill.js_divergence(b, a)) == pytest.approx(expect, rel=1e-6)
    assert float(distill.js_divergence(a, a + 5.0)) == pytest.approx(0.0, abs=1e-7)  # same distribution
    far = distill.js_divergence(torch.tensor([[50.0, -50.0]]), torch.tensor([[-50.0, 50.0]]))
    assert float(far) == pytest.approx(math.log(2.0), rel=1e-5)  # its upper bound


def test_paired_views_share_the_pose_and_differ_in_light_only():
    x = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    geometry_only = distill.paired_views(x, torch.Generator().manual_seed(2), 0.0)
    assert geometry_only.shape == (8, 3, 32, 32) and torch.equal(geometry_only[:4], geometry_only[4:])
    # the first half is what the one-view path makes at strength 0 from the same draws: the same pose
    assert torch.equal(geometry_only[:4], distill.train_input(x, torch.Generator().manual_seed(2), 0.0))
    lit = distill.paired_views(x, torch.Generator().manual_seed(2), 1.0)
    assert torch.equal(lit[:4], geometry_only[:4]) and not torch.equal(lit[4:], lit[:4])


@torch.no_grad()
def test_consistency_adds_the_js_term_to_kd_on_both_views():
    x, soft, y = _data(2)
    x, soft, y = torch.as_tensor(x), torch.as_tensor(soft), torch.as_tensor(y)
    torch.manual_seed(0)
    model = Student(CFG).eval()  # eval: BatchNorm must not depend on the batch for this identity
    params = TrainParams(consistency=3.0)
    got = distill.step_loss(model, x, soft, y, params, torch.Generator().manual_seed(4))
    views = distill.paired_views(x, torch.Generator().manual_seed(4), params.augment)
    logits = model(views)
    n = len(x)
    kd = kd_loss(logits, torch.cat([soft, soft]), torch.cat([y, y]), params.temperature, params.alpha)
    assert float(got) == pytest.approx(float(kd + 3.0 * distill.js_divergence(logits[:n], logits[n:])), rel=1e-5)
    one_view = distill.step_loss(model, x, soft, y, TrainParams(), torch.Generator().manual_seed(4))
    expect = kd_loss(model(distill.train_input(x, torch.Generator().manual_seed(4), 0.5)), soft, y, 4.0, 0.9)
    assert float(one_view) == pytest.approx(float(expect), rel=1e-6)


def _data(n_per_class=8):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), n_per_class)
    x = _tiny_run.images(rng, y)
    soft = np.full((len(y), 6), 0.02, np.float32)
    soft[np.arange(len(y)), y] = 0.9
    return x, soft, y


PARAMS = TrainParams(epochs=3, batch_size=16, threads=1)
CFG = StudentConfig(input_size=32)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("consistency", [0.0, 2.0])
def test_training_is_deterministic(consistency):
    x, soft, y = _data()
    params = dataclasses.replace(PARAMS, consistency=consistency)
    m1 = train_student(x, soft, y, CFG, params, seed=3, log=lambda m: None)
    m2 = train_student(x, soft, y, CFG, params, seed=3, log=lambda m: None)
    m3 = train_student(x, soft, y, CFG, params, seed=4, log=lambda m: None)
    assert _same(m1, m2)
    assert not _same(m1, m3)
    assert not torch.equal(m1.fc.weight, Student(CFG).fc.weight)  # it did train


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resume_from_checkpoint_equals_uninterrupted(tmp_path, stop_after):
    x, soft, y = _data()
    val = (x[::4], y[::4])  # the best-epoch choice is resumed too
    full_m = train_student(x, soft, y, CFG, PARAMS, seed=0, log=lambda m: None, val=val)
    ckpt = tmp_path / "checkpoint.pt"

    def interrupt(msg):
        if f"epoch {stop_after}/" in msg:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_student(x, soft, y, CFG, PARAMS, seed=0, checkpoint=ckpt, fingerprint="f", log=interrupt, val=val)
    assert ckpt.is_file() and not list(tmp_path.glob("*.tmp"))
    log = []
    m = train_student(x, soft, y, CFG, PARAMS, seed=0, checkpoint=ckpt, fingerprint="f", log=log.append, val=val)
    assert log[0] == f"student: resuming from {ckpt} after epoch {stop_after}"
    assert _same(m, full_m)
    log.clear()
    train_student(x, soft, y, CFG, PARAMS, seed=0, checkpoint=ckpt, fingerprint="other", log=log.append)
    assert "starting afresh" in log[0]


def test_distill_stage_writes_contract_files(distilled_run, tmp_path):
    trained, metrics = distilled_run  # make_run + distill_run(distill_config()), shared with other modules
    run = tmp_path / "r"
    shutil.copytree(trained, run)
    for name in ("student_float.pt", "baseline_float.pt", "config.json", "manifest.json"):
        assert (run / "student" / name).is_file()
    assert metrics["macs"] == count_macs(CFG) and metrics["params"] == count_params(CFG)
    assert 0.0 <= metrics["student_float_acc"] <= 1.0 and 0.0 <= metrics["teacher_student_agreement"] <= 1.0
    assert 0.0 <= metrics["baseline_float_acc"] <= 1.0
    assert metrics["kd_gain_float_points"] == round(100 * (metrics["student_float_acc"] - metrics["baseline_float_acc"]), 2)
    assert metrics["student_train_images"] == 6 * (8 + 8) and metrics["student_labelled_images"] == 6 * 8
    assert metrics["accuracy_data"] == "test split, 48 images"
    model = distill.load_float(run / "student" / "student_float.pt")
    assert model.cfg == CFG
    first = {n: (trained / "student" / n).read_bytes() for n in ("student_float.pt", "baseline_float.pt")}
    for ckpt in (run / "student").glob("checkpoint*.pt"):  # retrain from scratch: same seed, same bytes
        ckpt.unlink()
    distill.distill_run(run, _tiny_run.distill_config())
    assert all((run / "student" / n).read_bytes() == b for n, b in first.items())
    off = distill.distill_run(run, _tiny_run.distill_config(student_baseline="off"))
    assert "baseline_float_acc" not in off and not (run / "student" / "baseline_float.pt").exists()


def test_the_pool_labels_are_never_read(distilled_run, tmp_path):
    """Scrambled labels on the unlabeled pool give byte-identical students: no training step reads them."""
    import json

    from edgecore.manifest import record_stage

    run = _tiny_run.make_run(tmp_path / "r")  # the shared distilled run's inputs, then its pool labels scrambled
    path = run / "data" / "dataset.json"
    doc = json.loads(path.read_text())
    scrambled = 0
    for i, it in enumerate(doc["items"]):
        if it["split"] == "pool":
            scrambled += it["label"] != _tiny_run.CLASSES[(i * 7) % 6]
            it["label"] = _tiny_run.CLASSES[(i * 7) % 6]
    assert scrambled > 0
    path.write_text(json.dumps(doc))
    record_stage(run, "data", outputs=[path])
    distill.distill_run(run, _tiny_run.distill_config())
    names = ("student_float.pt", "baseline_float.pt")
    assert {n: (run / "student" / n).read_bytes() for n in names} == \
        {n: (distilled_run[0] / "student" / n).read_bytes() for n in names}


def test_baseline_uses_the_labelled_images_only(tmp_path):
    run = _tiny_run.make_run(tmp_path / "r")
    seen = []
    real = distill.train_student

    def spy(images, soft, labels, *a, **kw):
        seen.append((len(images), int((labels < 0).sum()), kw.get("desc")))
        return real(images, soft, labels, *a, **kw)

    distill.train_student = spy
    try:
        distill.distill_run(run, _tiny_run.distill_config(baseline_lrs="0.004,0.001"))
    finally:
        distill.train_student = real
    assert seen[0] == (96, 48, "KD student")  # 48 labelled + 48 pool images (label -1)
    assert seen[1:] == [(48, 0, "baseline lr 0.004"), (48, 0, "baseline lr 0.001")]


def test_distill_stage_user_errors(tmp_path):
    run = _tiny_run.make_run(tmp_path / "r", teacher_classes=list(reversed(_tiny_run.CLASSES)))
    with pytest.raises(UserError, match="do not match"):
        distill.distill_run(run, _tiny_run.distill_config())
    (run / "teacher" / "soft_labels.npz").unlink()
    with pytest.raises(UserError, match="soft labels not found"):
        distill.distill_run(run, _tiny_run.distill_config())
    assert not (run / "student" / "student_float.pt").exists()
    with pytest.raises(UserError, match="--student-width"):
        distill.distill_run(run, _tiny_run.distill_config(student_width=0))
    with pytest.raises(UserError, match="--baseline-lrs"):
        distill.distill_run(run, _tiny_run.distill_config(baseline_lrs="fast"))
    with pytest.raises(UserError, match="--student-consistency"):
        distill.distill_run(run, _tiny_run.distill_config(student_consistency=-1))


def test_a_planted_pickle_is_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "student_float.pt"
    torch.save({"config": {}, "state_dict": Boom()}, path)
    with pytest.raises(UserError, match="refusing to load"):
        distill.load_float(path)


def test_unreadable_checkpoint_starts_afresh(tmp_path):
    x, soft, y = _data()
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"not a checkpoint")
    log = []
    params = TrainParams(epochs=1, batch_size=16, threads=1)
    train_student(x, soft, y, CFG, params, seed=0, checkpoint=ckpt, fingerprint="f", log=log.append)
    assert "unreadable" in log[0] and torch.load(ckpt, weights_only=True)["epochs_done"] == 1
