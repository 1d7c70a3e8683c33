"""Run folders built once per session and shared by several test modules. Tests read them or copy them
(shutil.copytree) before writing: none may change one in place."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def taught_run(tmp_path_factory) -> Path:
    """The data stage (test_teach's tiny procedural set) and the in-process teach stage (a tiny effnet-lite0
    head): 36 images labelled in 5 chunks of 8. The unsharded, in-process reference of the shard and Ray tests."""
    from test_teach import label, make_data

    run = tmp_path_factory.mktemp("taught")
    make_data(run)
    label(run)
    return run


@pytest.fixture(scope="session")
def distilled_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run, metrics) of _tiny_run.make_run() through the distill stage with _tiny_run.distill_config(): the
    default tiny run that the distill, image-store and quantize tests would otherwise each train again."""
    import _tiny_run
    from compress import distill

    run = _tiny_run.make_run(tmp_path_factory.mktemp("distilled") / "r")
    return run, distill.distill_run(run, _tiny_run.distill_config())


@pytest.fixture(scope="session")
def tiny_qwen_vl(tmp_path_factory) -> Path:
    """A tiny random Qwen2.5-VL checkpoint folder for the six procedural classes (built offline, ~3 s), shared
    by the VLM teacher and Ray engine tests; they load it and never write into it."""
    pytest.importorskip("transformers")
    from compress.teachers.tiny_qwen_vl import build

    return build(tmp_path_factory.mktemp("ckpt") / "tiny-qwen2.5-vl",
                 ["basic", "burnt", "combined", "mixed", "progression", "segment"])
