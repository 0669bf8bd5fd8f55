"""The shared training loop: exact resume, DDP equivalence, checkpoints, logs, sample grids."""
import json
import socket

import pytest
import torch
import torch.multiprocessing as mp

from gan_bridge.train import (ShardedBatchSampler, latest_checkpoint, list_checkpoints, load_checkpoint,
                              save_checkpoint, train)
from gb_tiny_method import TinyConfig, TinyMethod, ddp_worker


def _config(run_dir, **kw):
    base = dict(run_dir=str(run_dir), steps=6, batch_size=8, lr=1e-2, seed=3, log_every=1, sample_every=3,
                checkpoint_every=3, keep_checkpoints=2, num_samples=4, device="cpu", progress=False,
                tensorboard=False)
    base.update(kw)
    return TinyConfig(**base)


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _final(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))


def test_resume_continues_bit_identically(tmp_path):
    full = TinyMethod(_config(tmp_path / "full"))
    result = train(full)
    assert result.step == 6 and set(result.scalars) == {"loss", "seen"}

    part = tmp_path / "part"
    train(TinyMethod(_config(part, steps=4)))  # checkpoints at 3 and 4 (the last step)
    # a crash after step 4 that lost checkpoint 4: resuming from 3 must drop the orphan log row of step 4
    (part / "checkpoints" / "ckpt-00000004.pt").unlink()
    assert [r["step"] for r in _rows(part)] == [1, 2, 3, 4]
    resumed = TinyMethod(_config(part))
    train(resumed)

    for name in ("net", "ema"):
        a, b = full.module(name).state_dict(), resumed.module(name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    sa, sb = full.optimizers["opt"].state_dict()["state"], resumed.optimizers["opt"].state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert resumed.seen == full.seen == 48
    assert _rows(part) == _rows(tmp_path / "full")
    assert (part / "log.csv").read_text() == (tmp_path / "full" / "log.csv").read_text()
    # the run is really random: another seed gives other losses
    other = TinyMethod(_config(tmp_path / "other", seed=4, steps=2))
    train(other)
    assert _rows(tmp_path / "other")[1]["loss"] != _rows(tmp_path / "full")[1]["loss"]


def test_run_folder_contents(tmp_path):
    run = tmp_path / "run"
    train(TinyMethod(_config(run, steps=7, checkpoint_every=2, keep_checkpoints=2)))
    assert [s for s, _ in list_checkpoints(run)] == [6, 7]
    assert not list((run / "checkpoints").glob("*.partial"))
    assert (run / "config.yaml").is_file() or (run / "config.json").is_file()
    header = (run / "log.csv").read_text().splitlines()[0]
    assert header == "step,loss,seen"
    grids = sorted(p.name for p in (run / "samples").iterdir())
    assert grids == ["step-00000003.png", "step-00000006.png"]
    from PIL import Image
    img = Image.open(run / "samples" / grids[0])
    assert img.size == (2 + 2 * 6, 2 + 2 * 6) and img.mode == "RGB"
    state = _final(run)
    assert state["step"] == 7 and state["world_size"] == 1 and state["config"]["steps"] == 7
    # a finished run resumed with more steps continues from its last checkpoint
    more = TinyMethod(_config(run, steps=9, checkpoint_every=2, keep_checkpoints=2))
    assert train(more).step == 9 and more.seen == 72
    with pytest.raises(ValueError, match="already has checkpoints"):
        train(TinyMethod(_config(run, resume="never")))


def test_checkpoint_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    for s in (2, 10, 30):
        save_checkpoint({"step": s}, tmp_path, s, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 30]
    with pytest.raises(ValueError, match="corrupt"):
        train(TinyMethod(_config(tmp_path / "x", resume=str(bad))))


def test_bad_batch_and_divergence(tmp_path):
    with pytest.raises(ValueError, match="dataset is empty"):
        ShardedBatchSampler(0, 4)
    with pytest.raises(ValueError, match="not divisible"):
        ShardedBatchSampler(10, 5, rank=0, world_size=2)
    with pytest.raises(FloatingPointError, match="diverged"):
        train(TinyMethod(_config(tmp_path / "nan", noise=float("inf"), steps=3)))


def test_sampler_shards_are_world_size_invariant():
    one = ShardedBatchSampler(10, 4, seed=5)
    halves = [ShardedBatchSampler(10, 4, rank=r, world_size=2, seed=5) for r in range(2)]
    for step in range(7):  # crosses epochs (10 is not a multiple of 4)
        assert one.indices(step) == halves[0].indices(step) + halves[1].indices(step)
    seen = [i for s in range(5) for i in one.indices(s)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert seen[:10] != seen[10:20]  # a new permutation per epoch
    late = ShardedBatchSampler(10, 4, seed=5, start_step=3)
    assert next(iter(late)) == one.indices(3)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_one_process(tmp_path):
    kw = dict(steps=4, noise=0.0, checkpoint_every=0, sample_every=2)
    single = TinyMethod(_config(tmp_path / "one", **kw))
    train(single)
    # fork: the children reuse this process's imports (spawn would re-import torch: ~10 s on 2 busy cores)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(ddp_worker, args=(2, _free_port(), _config(tmp_path / "two", **kw)), nprocs=2,
                       join=True, start_method=method)
    state = _final(tmp_path / "two")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    for name in ("net", "ema"):
        ref = single.module(name).state_dict()
        for k, v in state["modules"][name].items():
            torch.testing.assert_close(v, ref[k], rtol=1e-5, atol=1e-6)
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["step"] for r in two] == [1, 2, 3, 4]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["seen"] == a["seen"] / 2  # per-process counts, averaged over the 2 processes
    assert (tmp_path / "two" / "samples" / "step-00000004.png").is_file()
