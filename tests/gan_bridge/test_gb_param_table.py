"""gan_bridge.face.param_table: reading ``morph3d fit-table`` tables for training (a real table of fits to
faces rendered from the embedded ``open`` model)."""
import json

import numpy as np
import pytest
import torch

from gan_bridge.face.param_table import ParamTable, ParamTableError
from gan_bridge.train import sharded_loader
from gan_bridge.train.distributed import DistInfo
from morph3d.fitting import FitPipeline, plan_jobs
from morph3d.fitting.table import build_table
from morph3d.model import IBUG68, FaceParams, ParamLayout, load_model
from morph3d.render import SyntheticFaces, linear_to_srgb, render_face

N = 4


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """(model, table path, fit output folder) for N rendered photos fitted to their exact landmarks."""
    from PIL import Image
    root = tmp_path_factory.mktemp("params")
    model = load_model("open")
    batch = SyntheticFaces(model, image_size=96, batch_size=N, seed=2, pose_range_deg=(20.0, 10.0, 5.0)).batch(0)
    for folder in ("photos", "marks"):
        (root / folder).mkdir()
    for i in range(N):
        rgb = (linear_to_srgb(batch.image[i]).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / "photos" / f"p{i}.png")
        np.save(root / "marks" / f"p{i}.npy", batch.landmarks_2d[i].numpy().astype(np.float64))
    pipeline = FitPipeline(model, "open", outputs=("json",), threads=1)
    report = pipeline.run(plan_jobs(root / "photos", root / "marks"), root / "out", progress=False)
    assert len(report.done) == N
    table = build_table(root / "out", root / "params.npz", input_dir=root / "photos")
    assert table.written is not None and not table.problems
    return model, root / "params.npz", root / "out"


def test_load_matches_the_fits(fitted):
    model, path, out = fitted
    t = ParamTable.load(path)
    assert len(t) == N and list(t.ids) == [f"p{i}.png" for i in range(N)]
    assert t.layout.slices == ParamLayout.for_model(model).slices
    ds = t.dataset()
    for i in range(N):
        rec = json.loads((out / f"p{i}.json").read_text())
        want = ParamLayout.for_model(model).flatten(FaceParams.from_dict(rec["params"]))[0]
        torch.testing.assert_close(ds[i], want, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(t.pose_deg[i], rec["pose"], atol=1e-4)
    np.testing.assert_allclose(t.block("expression"), t.params[:, t.layout.slices["expression"]])


def test_face_params_reproduce_the_fitted_landmarks(fitted):
    model, path, _ = fitted
    t = ParamTable.load(path)
    params = t.face_params(range(N))
    assert params.camera.image_size == (96, 96)
    with torch.no_grad():
        lm = render_face(model, params, outputs=("landmarks",)).landmarks_2d
    inner = list(IBUG68.inner)  # the jaw outline slides along the silhouette in the fit; the rest is fixed
    np.testing.assert_allclose(lm.numpy()[:, inner], t.landmarks_fitted[:, inner], atol=0.05)
    assert np.all(t.nme < 0.05)


def test_dataset_blocks_columns_and_training_loader(fitted):
    t = ParamTable.load(fitted[1])
    ds = t.dataset(blocks=("expression", "rotation"), columns=("landmarks_input", "pose_deg"))
    item = ds[2]
    assert item["index"] == 2 and item["params"].shape == (t.layout.dim,)
    torch.testing.assert_close(item["rotation"], item["params"][t.layout.slices["rotation"]])
    assert item["landmarks_input"].shape == (68, 2) and item["pose_deg"].shape == (3,)
    loader = iter(sharded_loader(ds, batch_size=2, info=DistInfo(), seed=0))
    b = next(loader)
    assert b["params"].shape == (2, t.layout.dim) and b["expression"].shape == (2, t.block("expression").shape[1])
    good = t.subset(t.nme <= np.median(t.nme))
    assert 0 < len(good) <= N
    with pytest.raises(KeyError, match="no block 'beard'"):
        t.dataset(blocks=("beard",))
    with pytest.raises(KeyError, match="no numeric column 'ids'"):
        t.dataset(columns=("ids",))


def _rewrite(src, dst, **changes):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    np.savez(dst, **arrays)
    return dst


def test_clear_errors_for_bad_files(fitted, tmp_path):
    path = fitted[1]
    with pytest.raises(ParamTableError, match="no such table file"):
        ParamTable.load(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ParamTableError, match="not a readable .npz"):
        ParamTable.load(tmp_path / "junk.npz")
    with pytest.raises(ParamTableError, match="no 'meta'"):
        ParamTable.load(_rewrite(path, tmp_path / "a.npz", meta=None))
    meta = json.loads(str(np.load(path)["meta"]))
    with pytest.raises(ParamTableError, match="not a morph3d-param-table"):
        ParamTable.load(_rewrite(path, tmp_path / "b.npz", meta=np.array(json.dumps({**meta, "format": "x"}))))
    with pytest.raises(ParamTableError, match="newer than this reader"):
        ParamTable.load(_rewrite(path, tmp_path / "c.npz", meta=np.array(json.dumps({**meta, "version": 99}))))
    with pytest.raises(ParamTableError, match="lacks pose_deg"):
        ParamTable.load(_rewrite(path, tmp_path / "d.npz", pose_deg=None))
    params = np.load(path)["params"].copy()
    params[1, 3] = np.nan
    with pytest.raises(ParamTableError, match="NaN or infinite.*p1.png"):
        ParamTable.load(_rewrite(path, tmp_path / "e.npz", params=params))
    with pytest.raises(ParamTableError, match="'params' has shape"):
        ParamTable.load(_rewrite(path, tmp_path / "f.npz", params=params[:, :-1]))
    blocks = [dict(b) for b in meta["layout"]["blocks"]]
    blocks[1]["size"] += 1
    bad = {**meta, "layout": {**meta["layout"], "blocks": blocks}}
    with pytest.raises(ParamTableError, match="do not add up"):
        ParamTable.load(_rewrite(path, tmp_path / "g.npz", meta=np.array(json.dumps(bad))))
