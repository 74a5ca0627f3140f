"""Study files: extends, --set, steps / variants / grid expansion, scaling and variant ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import STUDIES

from ablate.config.errors import StudyError
from ablate.config.load import load_study
from ablate.config.net import make_divisible
from ablate.config.presets import preset


def write(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_roadmap_walks_from_resnet50_to_convnext_tiny() -> None:
    s = load_study(STUDIES / "roadmap.yaml")
    names = [v.name for v in s.variants]
    assert names[0].startswith("ResNet-50") and names[-1].startswith("separate downsampling")
    assert len({v.id for v in s.variants}) == len(s.variants)
    groups = {v.group for v in s.variants}
    assert {"macro design", "ResNeXt", "inverted bottleneck", "large kernel", "micro design"} <= groups
    assert s.variants[0].net == preset("resnet50")  # classic recipe: no stochastic depth
    final = s.variants[-1].net
    assert final.model_dump(exclude={"drop_path", "stem_width"}) == \
        preset("convnext_tiny").model_dump(exclude={"drop_path", "stem_width"})
    assert final.drop_path == 0.1  # from the modern recipe
    kernels = [v.net.kernel_size for v in s.variants if v.net]
    assert kernels[kernels.index(11) + 1] == 7  # the kernel sweep ends on 7, the value the paper keeps
    refs = load_study(STUDIES / "references.yaml")
    assert refs.variants[-1].timm == "swin_tiny_patch4_window7_224" and refs.variants[-1].net is None
    assert all(v.reference and v.reference.top1 and v.reference.gflops for v in s.variants)


def test_steps_are_cumulative_and_variants_independent(tmp_path: Path) -> None:
    base = {"name": "t", "model": {"preset": "resnet26"}, "data": {"dataset": "synthetic", "image_size": 32}}
    steps = load_study(write(tmp_path / "s.yaml", {**base, "steps": [
        {"name": "a", "set": {"kernel_size": 5}}, {"name": "b", "set": {"activation": "gelu"}}]}))
    assert [(v.net.kernel_size, v.net.activation) for v in steps.variants] == [(5, "relu"), (5, "gelu")]
    var = load_study(write(tmp_path / "v.yaml", {**base, "variants": [
        {"name": "a", "set": {"kernel_size": 5}}, {"name": "b", "set": {"activation": "gelu"}},
        {"name": "c", "model": {"preset": "convnext_atto"}}, {"name": "d", "model": {"timm": "resnet18"}}]}))
    assert [(v.net.kernel_size, v.net.activation) for v in var.variants[:2]] == [(5, "relu"), (3, "gelu")]
    assert var.variants[2].net.dims == (40, 80, 160, 320)
    assert var.variants[3].timm == "resnet18" and var.variants[3].net is None


def test_grid_is_the_cartesian_product(tmp_path: Path) -> None:
    s = load_study(write(tmp_path / "g.yaml", {"name": "g", "model": {"preset": "convnext_atto"},
                                                "data": {"dataset": "synthetic"},
                                                "grid": {"kernel_size": [3, 5, 7], "recipe.epochs": [1, 2]}}))
    assert [v.name for v in s.variants] == [f"kernel_size={k},epochs={e}" for k in (3, 5, 7) for e in (1, 2)]
    assert [(v.net.kernel_size, v.recipe.epochs) for v in s.variants][:3] == [(3, 1), (3, 2), (5, 1)]


def test_extends_deep_merges_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    write(tmp_path / "base" / "parent.yaml", {"name": "parent", "recipe": {"preset": "classic", "epochs": 5},
                                              "data": {"dataset": "synthetic", "image_size": 16},
                                              "seeds": [0, 1], "grid": {"kernel_size": [3, 5]}})
    child = load_study(write(tmp_path / "child.yaml", {"name": "child", "extends": "base/parent.yaml",
                                                       "recipe": {"epochs": 2}, "seeds": [7]}))
    r = child.study.recipe
    assert (r.preset, r.epochs, r.opt) == ("classic", 2, "sgd")  # merged key by key
    assert child.study.data.image_size == 16 and child.study.seeds == [7]  # lists replace
    assert len(child.variants) == 2


def test_set_overrides_are_yaml_typed(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", {"name": "s", "steps": [{"name": "a"}, {"name": "b"}]})
    s = load_study(path, ["recipe.epochs=3", "data.train_subset=200", "model.dims=[32, 64, 128, 256]",
                          "recipe.ema=null", "steps.1.set.kernel_size=5", "scale.width=0.5"])
    assert s.study.recipe.epochs == 3 and s.study.recipe.ema is None and s.study.data.train_subset == 200
    assert s.variants[0].net.dims == (32, 64, 128, 256) and s.variants[0].train_net.dims == (16, 32, 64, 128)
    assert s.variants[1].net.kernel_size == 5
    with pytest.raises(StudyError, match="no list item 5"):
        load_study(path, ["steps.5.name=x"])
    with pytest.raises(StudyError, match="KEY=VALUE"):
        load_study(path, ["recipe.epochs"])


def test_scale_and_data_shape_the_trained_network(tmp_path: Path) -> None:
    s = load_study(write(tmp_path / "s.yaml", {"name": "s", "model": {"preset": "convnext_tiny"},
                                               "data": {"dataset": "fashion-mnist", "image_size": 32},
                                               "scale": {"width": 0.25, "depth": 0.5}}))
    v = s.variants[0]
    assert v.net.dims == (96, 192, 384, 768) and v.net.in_chans == 3 and v.net.num_classes == 1000
    t = v.train_net
    assert t.dims == (24, 48, 96, 192) and t.depths == (2, 2, 5, 2)  # round half up, at least one block
    assert (t.in_chans, t.num_classes) == (1, 10)
    assert make_divisible(96 * 0.1, 8) == 16 and make_divisible(64 * 0.25, 8) == 16


def test_ids_follow_the_resolved_config(tmp_path: Path) -> None:
    study = {"name": "s", "data": {"dataset": "synthetic", "root": "/a"},
             "variants": [{"name": "a"}, {"name": "b", "set": {"kernel_size": 5}}]}
    path = write(tmp_path / "s.yaml", study)
    ids = [v.id for v in load_study(path).variants]
    assert ids == [v.id for v in load_study(path).variants]  # stable
    assert ids[0] != ids[1]
    assert [v.id for v in load_study(path, ["data.root=/elsewhere"]).variants] == ids  # where data lives: same
    assert [v.id for v in load_study(path, ["recipe.epochs=2"]).variants][0] != ids[0]  # how it is trained: new
    # the same network written differently (preset vs explicit fields) is the same variant
    explicit = write(tmp_path / "e.yaml", {**study, "model": preset("resnet50").model_dump(mode="json")})
    assert [v.id for v in load_study(explicit).variants] == ids
    assert load_study(path).variants[0].trial_id(3) == f"{ids[0]}-s3"


def test_one_kind_of_variant_list_per_study(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", {"name": "s", "steps": [{"name": "a"}], "grid": {"kernel_size": [3]}})
    with pytest.raises(StudyError, match="one of steps"):
        load_study(path)


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", {"name": "a", "extends": "b.yaml"})
    write(tmp_path / "b.yaml", {"name": "b", "extends": "a.yaml"})
    with pytest.raises(StudyError, match="cycle"):
        load_study(tmp_path / "a.yaml")


def test_search_space_is_checked_at_load_time(tmp_path: Path) -> None:
    base = {"name": "s", "model": {"preset": "convnext_atto"}, "data": {"dataset": "synthetic"}}
    ok = load_study(write(tmp_path / "ok.yaml", {**base, "search": {"sampler": "tpe", "trials": 5, "space": {
        "kernel_size": [3, 5], "recipe.lr": {"low": 1e-4, "high": 1e-2, "log": True}}}}))
    assert ok.kind == "search" and ok.variants == []
    grid = load_study(write(tmp_path / "g.yaml", {**base, "search": {"sampler": "grid", "space": {
        "kernel_size": [3, 5], "expansion": [2, 4]}}}))
    assert len(grid.variants) == 4  # a grid search is expanded and enqueued like grid:
    bad = {"kernel_size": [3, 4]}, {"recipe.lr": {"low": 1e-2, "high": 1e-4}}, {"kernel_sise": [3]}
    for space in bad:
        with pytest.raises(StudyError, match="search.space"):
            load_study(write(tmp_path / "b.yaml", {**base, "search": {"space": space}}))


def test_the_types_live_apart_and_the_cache_paths_need_no_torch(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """The cache paths are in one torch-free place (`config.paths`), which measure's count cache writes under; no
    module of ablate.config imports torch, timm or
    ablate.measure when it is imported."""
    import ast

    from ablate.config import load, paths
    from ablate.measure.counts import Counts, cache_put

    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path))
    assert paths.counts_dir() == tmp_path / "counts" and paths.data_dir() == tmp_path / "data"
    cache_put("k", Counts(params=1, flops=2, flops_conv_linear=2, activations=3, image_size=8))
    assert (tmp_path / "counts" / "k.json").is_file()
    for file in Path(load.__file__).parent.glob("*.py"):
        for node in ast.parse(file.read_text()).body:  # module-level imports only
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not [n for n in names if n.split(".")[0] in ("torch", "timm") or n.startswith("ablate.measure")], \
                (file.name, names)
