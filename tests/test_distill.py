"""Student shapes/MACs, BN folding, KD loss maths, deterministic + resumable training, distill stage errors."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compress import distill
from compress.distill import TrainParams, augment, kd_loss, train_student
from compress.errors import UserError
from compress.student import (QATStudent, Student, StudentConfig, count_macs, count_params, fold_bn, layer_specs,
                              same_pad)
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


def test_default_student_size_and_macs():
    cfg = StudentConfig()
    specs = layer_specs(cfg)
    assert [(s.kind, s.out_hw, s.cout) for s in specs[:3]] == [("conv", 48, 8), ("dw", 24, 8), ("pw", 24, 16)]
    assert specs[0].macs == 48 * 48 * 8 * 3 * 3 * 3
    assert specs[1].macs == 24 * 24 * 8 * 9
    assert count_macs(cfg) == 1_148_928
    folded = fold_bn(Student(cfg).eval())
    n = sum(w.size + b.size for _, w, b in folded["convs"]) + sum(a.size for a in folded["fc"])
    assert count_params(cfg) == n == 10_150
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
    x = torch.rand(4, 3, 32, 32)
    h = x
    for spec, w, b in folded["convs"]:
        top, bottom = same_pad(h.shape[-1], spec.kernel, spec.stride)
        h = F.relu6(F.conv2d(F.pad(h, (top, bottom, top, bottom)), torch.from_numpy(w), torch.from_numpy(b),
                             spec.stride, 0, 1, spec.groups))
    out = F.linear(h.mean((2, 3)), torch.from_numpy(folded["fc"][0]), torch.from_numpy(folded["fc"][1]))
    assert torch.allclose(out, model(x), atol=1e-5)


def test_qat_input_quantization_is_the_contracts():
    cfg = StudentConfig(input_size=32)
    qat = QATStudent(cfg, fold_bn(Student(cfg).eval())).eval()
    pixels = torch.arange(256, dtype=torch.float32) / 255.0
    # every pixel / 255 sits on the int8 grid (scale 1/255, zero point -128): no level moves
    assert float((qat.q_in(pixels) - pixels).abs().max()) < 1e-6


def test_augment_is_seeded_and_in_range():
    x = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def _data(n_per_class=8):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), n_per_class)
    x = _tiny_run.images(rng, y)
    soft = np.full((len(y), 6), 0.02, np.float32)
    soft[np.arange(len(y)), y] = 0.9
    return x, soft, y


PARAMS = TrainParams(epochs=2, qat_epochs=2, batch_size=16, threads=1)
CFG = StudentConfig(input_size=32)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_is_deterministic():
    x, soft, y = _data()
    m1, q1 = train_student(x, soft, y, CFG, PARAMS, seed=3, log=lambda m: None)
    m2, q2 = train_student(x, soft, y, CFG, PARAMS, seed=3, log=lambda m: None)
    m3, _ = train_student(x, soft, y, CFG, PARAMS, seed=4, log=lambda m: None)
    assert _same(m1, m2) and _same(q1, q2)
    assert not _same(m1, m3)
    assert not torch.equal(m1.fc.weight, Student(CFG).fc.weight)  # it did train


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("stop_after", [1, 3])  # in the float phase and in the QAT phase
def test_resume_from_checkpoint_equals_uninterrupted(tmp_path, stop_after):
    x, soft, y = _data()
    full_m, full_q = train_student(x, soft, y, CFG, PARAMS, seed=0, log=lambda m: None)
    ckpt = tmp_path / "checkpoint.pt"

    def interrupt(msg):
        if f"epoch {stop_after}/" in msg:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_student(x, soft, y, CFG, PARAMS, seed=0, checkpoint=ckpt, fingerprint="f", log=interrupt)
    assert ckpt.is_file() and not list(tmp_path.glob("*.tmp"))
    log = []
    m, q = train_student(x, soft, y, CFG, PARAMS, seed=0, checkpoint=ckpt, fingerprint="f", log=log.append)
    assert log[0] == f"resuming from {ckpt} after epoch {stop_after}"
    assert _same(m, full_m) and _same(q, full_q)
    log.clear()
    train_student(x, soft, y, CFG, PARAMS, seed=0, checkpoint=ckpt, fingerprint="other", log=log.append)
    assert "starting afresh" in log[0]


def test_distill_stage_writes_contract_files(tmp_path):
    run = _tiny_run.make_run(tmp_path / "r")
    metrics = distill.run(_tiny_run.stage_args(run))
    for name in ("student_float.pt", "student_qat.pt", "config.json", "manifest.json"):
        assert (run / "student" / name).is_file()
    assert metrics["macs"] == count_macs(CFG) and metrics["params"] == count_params(CFG)
    assert 0.0 <= metrics["student_float_acc"] <= 1.0 and 0.0 <= metrics["teacher_student_agreement"] <= 1.0
    model = distill.load_float(run / "student" / "student_float.pt")
    assert model.cfg == CFG
    first = {n: (run / "student" / n).read_bytes() for n in ("student_float.pt", "student_qat.pt")}
    (run / "student" / "checkpoint.pt").unlink()  # retrain from scratch: same seed, same bytes
    distill.run(_tiny_run.stage_args(run))
    assert all((run / "student" / n).read_bytes() == b for n, b in first.items())


def test_distill_stage_user_errors(tmp_path):
    run = _tiny_run.make_run(tmp_path / "r", teacher_classes=list(reversed(_tiny_run.CLASSES)))
    with pytest.raises(UserError, match="do not match"):
        distill.run(_tiny_run.stage_args(run))
    (run / "teacher" / "soft_labels.npz").unlink()
    with pytest.raises(UserError, match="soft labels not found"):
        distill.run(_tiny_run.stage_args(run))
    assert not (run / "student" / "student_float.pt").exists()
    with pytest.raises(UserError, match="--student-width"):
        distill.run(_tiny_run.stage_args(run, "--student-width", "0"))


def test_unreadable_checkpoint_starts_afresh(tmp_path):
    x, soft, y = _data()
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"not a checkpoint")
    log = []
    params = TrainParams(epochs=1, qat_epochs=0, batch_size=16, threads=1)
    _, qat = train_student(x, soft, y, CFG, params, seed=0, checkpoint=ckpt, fingerprint="f", log=log.append)
    assert "unreadable" in log[0] and torch.load(ckpt, weights_only=False)["epochs_done"] == 1
    # without QAT epochs the activation ranges still come from the training images
    assert all(bool(q.seen) and float(q.hi) > float(q.lo) for q in qat.q_convs)
