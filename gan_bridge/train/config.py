"""Training configurations: dataclasses loaded from YAML/JSON, overridden from the command line.

Every method's config subclasses :class:`TrainConfig`. Fields may be nested dataclasses; overrides
address them with dots (``optim.lr=1e-3``). Values are typed by the field annotations.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    """What every training run needs; methods subclass it and add their own fields.

    run_dir: where config, logs, samples and checkpoints go.
    steps: total optimisation steps; batch_size: samples per step summed over all processes.
    lr: base learning rate (methods may define more).
    seed: base seed; process ``rank`` seeds its generators with ``seed + rank``.
    log_every / sample_every / checkpoint_every: intervals in steps (0 disables; a final checkpoint is
    always written). keep_checkpoints: how many recent checkpoints to keep (0 keeps all).
    num_samples: images in a sample grid (drawn at fixed inputs).
    device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
    num_workers: data-loader worker processes per training process.
    resume: ``"auto"`` (latest checkpoint in run_dir if any), ``"never"``, or a checkpoint path.
    progress: show a tqdm bar (rank 0 only). tensorboard: also log to TensorBoard when it is installed.
    ddp_find_unused: DistributedDataParallel's ``find_unused_parameters``.
    """

    run_dir: str = "runs/default"
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-3
    seed: int = 0
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    num_samples: int = 16
    device: str = "auto"
    num_workers: int = 0
    resume: str = "auto"
    progress: bool = True
    tensorboard: bool = True
    ddp_find_unused: bool = False


def check_nonnegative(config, names) -> None:
    """One-line ValueError unless every field of ``names`` (loss weights, margins) is a number >= 0 (NaN fails)."""
    for name in names:
        value = getattr(config, name)
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def check_choice(config, name: str, choices) -> None:
    """One-line ValueError unless field ``name`` is one of ``choices``."""
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def config_to_dict(config) -> dict:
    """A dataclass config as plain JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` (parsed YAML/JSON or a command-line string) converted to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if errors else f"{where}: cannot be None")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=f"{where}.")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip()
            value = _parse_text(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _parse_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def from_dict(cls, data: dict, prefix: str = ""):
    """Build the dataclass ``cls`` from a (possibly partial) mapping; unknown keys are errors."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config key '{prefix}{unknown[0]}' for {cls.__name__}; "
                         f"known keys: {', '.join(sorted(names))}")
    return cls(**{k: _coerce(v, hints[k], prefix + k) for k, v in data.items()})


def apply_overrides(config, overrides: dict[str, Any]):
    """A copy of ``config`` with dotted keys (``"optim.lr"``) set, each value typed by its field."""
    data = config_to_dict(config)
    for key, value in overrides.items():
        node, cls, parts = data, type(config), key.split(".")
        for i, part in enumerate(parts):
            names = {f.name for f in dataclasses.fields(cls)}
            if part not in names:
                where = ".".join(parts[:i + 1])
                raise ValueError(f"unknown config key '{where}' for {cls.__name__}; "
                                 f"known keys: {', '.join(sorted(names))}")
            tp = _hints(cls)[part]
            if i == len(parts) - 1:
                node[part] = _coerce(value, tp, key)
                if dataclasses.is_dataclass(node[part]):
                    node[part] = config_to_dict(node[part])
            else:
                inner = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
                if not inner:
                    raise ValueError(f"config key '{'.'.join(parts[:i + 1])}' is not a nested section")
                cls = inner[0]
                if node.get(part) is None:
                    node[part] = config_to_dict(cls())
                node = node[part]
    return from_dict(type(config), data)


def parse_overrides(args: list[str]) -> dict[str, str]:
    """Command-line overrides ``key=value``, ``--key value`` or ``--key=value`` -> {dotted key: text}.

    A ``--flag`` followed by another option (or nothing) means ``true``; dashes in keys become underscores.
    """
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            key = arg[2:]
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--") and "=" not in args[i + 1]:
                value = args[i + 1]
                i += 1
            else:
                value = "true"
        elif "=" in arg:
            key, value = arg.split("=", 1)
        else:
            raise ValueError(f"cannot read override '{arg}': write key=value or --key value")
        key = key.strip().replace("-", "_")
        if not key:
            raise ValueError(f"override '{arg}' has an empty key")
        out[key] = value
        i += 1
    return out


def read_config_file(path: str | Path) -> dict:
    """The mapping stored in a ``.yaml``/``.yml`` or ``.json`` config file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.suffix not in (".yaml", ".yml", ".json"):
        raise ValueError(f"{path}: config files are .yaml, .yml or .json")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or use a .json config")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def load_config(cls, path: str | Path | None = None, overrides: list[str] | dict | None = None):
    """``cls`` defaults, updated from the file at ``path`` (if any), then from ``overrides``."""
    config = from_dict(cls, read_config_file(path)) if path is not None else cls()
    if overrides:
        config = apply_overrides(config, parse_overrides(overrides) if isinstance(overrides, list) else overrides)
    return config


def save_config(config, run_dir: str | Path) -> Path:
    """Write ``config.yaml`` (``config.json`` without PyYAML) into ``run_dir``, atomically."""
    run_dir = Path(run_dir)
    data = config_to_dict(config)
    try:
        import yaml
        path, text = run_dir / "config.yaml", yaml.safe_dump(data, sort_keys=False)
    except ImportError:
        path, text = run_dir / "config.json", json.dumps(data, indent=1)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    tmp.replace(path)
    return path


__all__ = ["TrainConfig", "apply_overrides", "check_choice", "check_nonnegative", "config_to_dict", "from_dict",
           "load_config", "parse_overrides", "read_config_file", "save_config"]
