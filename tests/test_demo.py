"""python -m lstm_fused.demo adding: the task's data, and a tiny run end to end
per run of the demo's table (runs whose keyword this build of lstm_fused.LSTM
does not take yet are skipped)."""
import json
import math

import pytest
import torch

import lstm_fused
from lstm_fused.demo import main
from lstm_fused.demo.adding import RUNS, adding_batch

TINY = ["--length", "20", "--steps", "30", "--hidden", "8", "--batch", "16", "--test-size", "64"]


@pytest.mark.parametrize("length", [2, 3, 20, 201])
def test_data_marks_two_steps_and_sums_their_values(length):
    x, y = adding_batch(256, length, torch.Generator().manual_seed(0))
    assert x.shape == (256, length, 2) and y.shape == (256,)
    values, marks = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values <= 1)).all()
    assert ((marks == 0) | (marks == 1)).all()
    half = length // 2
    assert (marks[:, :half].sum(1) == 1).all() and (marks[:, half:].sum(1) == 1).all()
    torch.testing.assert_close(y, (values * marks).sum(1), rtol=0, atol=0)


def test_data_follows_the_generator():
    a = adding_batch(8, 50, torch.Generator().manual_seed(3))
    b = adding_batch(8, 50, torch.Generator().manual_seed(3))
    c = adding_batch(8, 50, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # marks land all over each half, not at a fixed step
    x, _ = adding_batch(512, 50, torch.Generator().manual_seed(0))
    assert len(set(x[..., 1].nonzero()[:, 1].tolist())) > 40


def test_lists_the_demos(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "adding" in capsys.readouterr().out


def _needs(kwargs):
    try:
        lstm_fused.LSTM(2, 4, **kwargs)
    except TypeError as e:
        pytest.skip(f"lstm_fused.LSTM does not take {kwargs} in this build: {e}")


@pytest.mark.parametrize("name", list(RUNS))
def test_tiny_run_writes_every_output(name, tmp_path, capsys):
    _needs(RUNS[name])
    assert main(["adding", *TINY, "--variants", name, "--out", str(tmp_path)]) == 0
    for f in ("curves_T20.png", "input_gate_T20.png", "results_T20.md", "results_T20.json"):
        assert (tmp_path / f).stat().st_size > 0, f
    with open(tmp_path / "results_T20.json") as f:
        data = json.load(f)
    assert (data["length"], data["steps"], data["hidden"]) == (20, 30, 8)
    [row] = data["runs"]
    assert row["name"] == name and row["kwargs"] == RUNS[name]
    steps = [p["step"] for p in row["curve"]]
    assert steps[0] == 0 and steps[-1] == 30 and steps == sorted(set(steps))
    mses = [p["test_mse"] for p in row["curve"]]
    assert all(math.isfinite(m) for m in mses) and row["final_test_mse"] == mses[-1]
    # the untrained head answers about 0 (MSE near 7/6): 30 steps reach far below it
    assert mses[-1] < 0.5 * mses[0]
    assert 0.0 <= row["input_gate_marked"] <= 1.0 and 0.0 <= row["input_gate_unmarked"] <= 1.0
    table = (tmp_path / "results_T20.md").read_text()
    assert f"| {name} |" in table and table in capsys.readouterr().out


def test_same_seed_same_curve(tmp_path):
    curves = []
    for k in range(2):
        main(["adding", *TINY, "--variants", "standard", "--out", str(tmp_path / str(k)), "--quiet"])
        with open(tmp_path / str(k) / "results_T20.json") as f:
            curves.append([p["test_mse"] for p in json.load(f)["runs"][0]["curve"]])
    assert curves[0] == curves[1]
    # the demo flushes subnormals only while it runs
    assert torch.tensor(1e-40).item() != 0.0


def test_rejects_unknown_run(capsys):
    with pytest.raises(SystemExit) as e:
        main(["adding", "--variants", "standard,nope"])
    assert e.value.code == 2 and "nope" in capsys.readouterr().err
