"""``gan-bridge train``: method resolution, config file + overrides, one-line errors."""
import json

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
