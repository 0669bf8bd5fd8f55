"""The training loop on the synthetic face world: a tiny landmark regressor, resumed exactly."""
import json
from dataclasses import dataclass

import torch
from torch import nn

from gan_bridge.face.world import FaceWorld, FaceWorldDataset, WorldConfig, collate_world
from gan_bridge.train import Method, TrainConfig, sharded_loader, train

SIZE = 32
_WORLD = {}


def world():
    if "w" not in _WORLD:
        _WORLD["w"] = FaceWorld(WorldConfig(image_size=SIZE, seed=5))
    return _WORLD["w"]


@dataclass
class LandmarkConfig(TrainConfig):
    width: int = 8


class LandmarkRegressor(Method):
    """images (B, 3, 32, 32) -> 68 landmarks in [-1, 1] image units; loss on visible landmarks."""

    config_class = LandmarkConfig

    def build(self, config, device):
        w = config.width
        net = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1), nn.ReLU(), nn.Conv2d(w, w, 3, 2, 1), nn.ReLU(),
                            nn.Flatten(), nn.Linear(w * 8 * 8, 136)).to(device)
        return {"net": net}, {"opt": torch.optim.Adam(net.parameters(), lr=config.lr)}

    def data(self, start_step):
        return sharded_loader(FaceWorldDataset(world(), 64), self.config.batch_size, self.dist, self.config.seed,
                              start_step, self.config.num_workers, collate_fn=collate_world)

    def train_step(self, batch, step):
        target = batch.landmarks_2d / (SIZE - 1) * 2 - 1
        pred = self.modules["net"](batch.image).reshape(-1, 68, 2)
        vis = batch.landmark_visible[..., None].float()
        loss = ((pred - torch.nan_to_num(target)) ** 2 * vis).sum() / vis.sum().clamp_min(1) / 2
        self.optimizers["opt"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["opt"].step()
        return {"loss": loss.detach(), "visible": vis.mean()}

    def fixed_inputs(self, n, generator):
        return world().samples(range(10_000, 10_000 + n)).image

    def sample(self, fixed):
        return fixed  # the inputs themselves: enough to check the grid plumbing


def _cfg(run, **kw):
    return LandmarkConfig(**{**dict(run_dir=str(run), steps=3, batch_size=4, lr=1e-3, log_every=1,
                                    sample_every=3, checkpoint_every=2, num_samples=2, device="cpu",
                                    progress=False, tensorboard=False), **kw})


def test_landmark_regressor_trains_and_resumes_on_the_world(tmp_path):
    torch.set_num_threads(1)
    full = LandmarkRegressor(_cfg(tmp_path / "full"))
    result = train(full)
    assert result.step == 3 and 0.5 < result.scalars["visible"] <= 1
    train(LandmarkRegressor(_cfg(tmp_path / "part", steps=2)))
    resumed = LandmarkRegressor(_cfg(tmp_path / "part", num_workers=1))  # batches from a worker process
    train(resumed)
    a, b = full.module("net").state_dict(), resumed.module("net").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = lambda run: [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(tmp_path / "full") == rows(tmp_path / "part")
    assert (tmp_path / "full" / "samples" / "step-00000003.png").is_file()
