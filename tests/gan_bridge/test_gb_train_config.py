"""Training configs: YAML/JSON round trips and typed command-line overrides (nested keys included)."""
import json

import pytest

from gan_bridge.train import (TrainConfig, apply_overrides, config_to_dict, load_config, parse_overrides,
                              save_config)
from gb_tiny_method import OptimSection, TinyConfig


def test_round_trip_yaml_and_json(tmp_path):
    cfg = TinyConfig(run_dir="r", steps=5, lr=3e-4, hidden=4, tags=["a", "b"],
                     optim=OptimSection(betas=(0.0, 0.9), weight_decay=0.1))
    path = save_config(cfg, tmp_path)
    assert path.name in ("config.yaml", "config.json")
    assert load_config(TinyConfig, path) == cfg
    j = tmp_path / "c.json"
    j.write_text(json.dumps(config_to_dict(cfg)))
    back = load_config(TinyConfig, j)
    assert back == cfg and isinstance(back.optim.betas, tuple) and isinstance(back.optim, OptimSection)


def test_overrides_are_typed_and_nested(tmp_path):
    over = parse_overrides(["steps=20", "--lr", "1e-3", "--progress=false", "optim.betas=0.1,0.2",
                            "--optim.weight-decay", "0.5", "tags=[\"x\"]", "--tensorboard"])
    assert over == {"steps": "20", "lr": "1e-3", "progress": "false", "optim.betas": "0.1,0.2",
                    "optim.weight_decay": "0.5", "tags": "[\"x\"]", "tensorboard": "true"}
    cfg = apply_overrides(TinyConfig(tensorboard=False), over)
    assert cfg.steps == 20 and cfg.lr == 1e-3 and cfg.progress is False and cfg.tensorboard is True
    assert cfg.optim == OptimSection(betas=(0.1, 0.2), weight_decay=0.5) and cfg.tags == ["x"]
    # file values, then overrides on top
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"steps": 7, "optim": {"weight_decay": 0.25}}))
    cfg = load_config(TinyConfig, f, ["hidden=3"])
    assert (cfg.steps, cfg.hidden, cfg.optim.weight_decay, cfg.optim.betas) == (7, 3, 0.25, (0.5, 0.99))
    assert load_config(TrainConfig, None, {"seed": "4"}).seed == 4


@pytest.mark.parametrize("override, message", [
    ({"stepz": "1"}, "unknown config key 'stepz'"),
    ({"steps": "1.5"}, "steps: expected an integer"),
    ({"lr": "fast"}, "lr: expected a number"),
    ({"progress": "maybe"}, "progress: expected true/false"),
    ({"optim.beta": "1"}, "unknown config key 'optim.beta'"),
    ({"optim.betas": "1,2,3"}, "expected 2 values"),
    ({"steps.x": "1"}, "is not a nested section"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(TinyConfig(), override)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(TinyConfig, tmp_path / "none.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{steps: ")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(TinyConfig, bad)
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(TinyConfig, lst)
    txt = tmp_path / "c.toml"
    txt.write_text("")
    with pytest.raises(ValueError, match="config files are"):
        load_config(TinyConfig, txt)
    with pytest.raises(ValueError, match="write key=value"):
        parse_overrides(["steps"])


def test_shared_validators_name_the_field():
    from types import SimpleNamespace

    from gan_bridge.train.config import check_choice, check_nonnegative
    c = SimpleNamespace(a=0.0, b=2, bad=-0.5, nan=float("nan"), kind="x")
    check_nonnegative(c, ("a", "b"))
    for name in ("bad", "nan"):
        with pytest.raises(ValueError, match=f"^{name} must be >= 0"):
            check_nonnegative(c, ("a", name))
    check_choice(c, "kind", ("x", "y"))
    with pytest.raises(ValueError, match="unknown kind 'x'; choose one of y, z"):
        check_choice(c, "kind", ("y", "z"))
