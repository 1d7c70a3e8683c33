"""Stage configs. Each stage's options are one frozen dataclass whose field names are the stage's argparse
destinations (and whose defaults are the CLI's defaults); the CLI only parses arguments into it, and the stage's
Python function takes it: `compress.data.build_dataset(run_dir, DataConfig(...))` needs no parser."""
from __future__ import annotations

import argparse
from dataclasses import fields


def from_args(cls, args: argparse.Namespace):
    """The `cls` config holding the values `args` parsed for its fields (other stages' options are ignored)."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
