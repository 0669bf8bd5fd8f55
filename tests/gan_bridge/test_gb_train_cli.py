"""``gan-bridge train``: method resolution, config file + overrides, one-line errors."""
import json

import pytest

from gan_bridge.cli import main
from gan_bridge.train import latest_checkpoint, load_checkpoint


def test_train_command_runs_a_method(tmp_path, capsys):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"steps": 3, "batch_size": 4, "device": "cpu", "tensorboard": False}))
    run = tmp_path / "run"
    rc = main(["train", "gb_tiny_method:TinyMethod", str(cfg), "--run-dir", str(run), "--progress", "false",
               "optim.weight_decay=0.01", "sample_every=0"])
    assert rc == 0
    assert "step 3: loss=" in capsys.readouterr().out
    state = load_checkpoint(latest_checkpoint(run))
    assert state["step"] == 3 and state["config"]["optim"]["weight_decay"] == 0.01
    assert state["config"]["batch_size"] == 4

    assert main(["train", "gb_tiny_method:TinyMethod", str(cfg), "hidden=5", "--print-config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["hidden"] == 5 and shown["steps"] == 3


def test_train_command_errors(tmp_path, capsys):
    assert main(["train", "nosuchmethod"]) == 2
    assert "unknown method 'nosuchmethod'" in capsys.readouterr().err
    assert main(["train", "gb_tiny_method:ToyData"]) == 2
    assert "not a gan_bridge.train.Method" in capsys.readouterr().err
    assert main(["train", "gb_tiny_method:TinyMethod", "steps=abc", "--print-config"]) == 2
    assert "steps: expected an integer" in capsys.readouterr().err
    assert main(["train", "gb_tiny_method:TinyMethod", "notes.txt"]) == 2
    assert "neither a .yaml/.json config" in capsys.readouterr().err


def test_export_main_passes_run_out_and_the_precision_flag(tmp_path, capsys):
    from gan_bridge.train.export import export_main
    calls = []

    def export(run, out, **kwargs):
        calls.append((run, out, kwargs))
        return tmp_path / out

    assert export_main(["export", "runs/a", "a.pt"], "prog", "h", "o", export) == 0
    assert export_main(["export", "runs/a", "b.pt"], "prog", "h", "o", export, half_default=True) == 0
    assert export_main(["export", "runs/a", "c.pt", "--float32"], "prog", "h", "o", export, half_default=True) == 0
    assert export_main(["export", "runs/a", "d.pt", "--float16"], "prog", "h", "o", export, half_default=False) == 0
    assert calls == [("runs/a", "a.pt", {}), ("runs/a", "b.pt", {"half": True}), ("runs/a", "c.pt", {"half": False}),
                     ("runs/a", "d.pt", {"half": True})]
    assert str(tmp_path / "d.pt") in capsys.readouterr().out
    with pytest.raises(SystemExit):
        export_main(["export", "runs/a", "a.pt", "--float32"], "prog", "h", "o", export)
