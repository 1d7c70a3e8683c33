"""Each stage's CLI only parses arguments into the stage's config dataclass: the parser's defaults are the
config's defaults, every config field is an option, and a parsed option lands in the config unchanged."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from compress import data, distill, quantize, release, teach
from edgecore.config import from_args
from benchmarks import run as bench
from export.rp2040 import build

STAGES = [(data, data.DataConfig), (teach, teach.TeachConfig), (distill, distill.DistillConfig),
          (quantize, quantize.QuantizeConfig), (build, build.FirmwareConfig), (bench, bench.BenchConfig),
          (release, release.ReleaseConfig)]


def _parser(module) -> argparse.ArgumentParser:
    if module is bench:
        return bench.build_parser()
    p = argparse.ArgumentParser()
    p.add_argument("--run", type=Path, default=Path("artifacts/default"))
    p.add_argument("--seed", type=int, default=0)
    module.add_arguments(p)
    return p


@pytest.mark.parametrize("module,config", STAGES, ids=lambda x: getattr(x, "__name__", ""))
def test_cli_defaults_are_the_config_defaults(module, config):
    if module is bench:  # the harness wants a target, or all of them
        assert from_args(config, _parser(module).parse_args(["--all"])) == config(all=True)
    else:
        assert from_args(config, _parser(module).parse_args([])) == config()


@pytest.mark.parametrize("module,config", STAGES, ids=lambda x: getattr(x, "__name__", ""))
def test_every_config_field_is_an_option(module, config):
    dests = {a.dest for a in _parser(module)._actions}
    assert {f.name for f in dataclasses.fields(config)} <= dests


def test_a_parsed_option_reaches_the_config():
    cfg = from_args(data.DataConfig, _parser(data).parse_args(["--data-size", "40", "--labeled-per-class", "all",
                                                                "--seed", "3"]))
    assert (cfg.data_size, cfg.labeled_per_class, cfg.seed) == (40, "all", 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data_size = 1
