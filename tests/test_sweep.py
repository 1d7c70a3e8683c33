"""The seeds x label-budget table: mean and spread over the finished cells, gaps said as 'not run'."""
import json

from compress import sweep


def _cell(root, seed, k, teacher, base, kd):
    run = root / f"seed{seed}-k{k}"
    run.mkdir(parents=True)
    metrics = {"teacher_test_acc": teacher, "baseline_float_acc": base, "student_float_acc": kd}
    (run / "manifest.json").write_text(json.dumps({"stages": {}, "metrics": metrics}))


def test_table_from_finished_cells(tmp_path, capsys):
    _cell(tmp_path, 0, "20", 0.80, 0.60, 0.70)
    _cell(tmp_path, 1, "20", 0.70, 0.50, 0.80)
    _cell(tmp_path, 0, "5", 0.50, 0.40, 0.45)
    (tmp_path / "seed1-k5").mkdir()  # started, not finished: left out
    assert sweep.main(["--collect", "--seeds", "0,1", "--budgets", "5,20,50", "--out", str(tmp_path),
                       "--table", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    assert "| K = 5 | K = 20 | K = 50 |" in text
    assert "| KD student (labelled images + teacher-labelled pool) | 45.0 (1 seed) | 75.0 ± 7.1 (2 seeds) | not run |" \
        in text
    assert "| gain: KD student minus baseline (points) | 5.0 (1 seed) | 20.0 ± 14.1 (2 seeds) | not run |" in text
    assert "3 runs" in capsys.readouterr().out


def test_bad_seeds_are_one_line(capsys):
    assert sweep.main(["--collect", "--seeds", "zero"]) == 2
    assert "error: --seeds must be comma-separated integers" in capsys.readouterr().err
