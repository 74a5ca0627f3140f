"""Plug-ins (issue 27): a study's `plugins:` register norms, activations, stems, blocks and whole timm models;
they are counted, trained and reported like any network, and an edit of a plug-in's source makes its variants'
trials new ones. Tiny networks on synthetic data: each test takes seconds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_integrity import cli, error_lines  # noqa: F401 - `cli` is a fixture

from ablate.config import registry
from ablate.config.load import load_study

# each test imports the plug-in afresh (its own file): timm warns that the model name is registered again
pytestmark = pytest.mark.filterwarnings("ignore:Overwriting .* in registry:UserWarning")

PLUGIN = '''
import torch.nn as nn
from timm.models import register_model

from ablate.config.registry import register_norm


@register_norm("gn4")
def gn4(channels: int) -> nn.Module:
    """GroupNorm with groups of 4 channels."""
    return nn.GroupNorm(max(1, channels // 4), channels)


class Pico(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, **_):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 8, 4, 4)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


@register_model
def pico_plugin_net(pretrained: bool = False, **kwargs):
    return Pico(**kwargs)
'''

STUDY = """
name: plug
plugins: [{plugin}]
model: {{depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}}
data: {{dataset: synthetic, image_size: 16, train_subset: 64, val_subset: 32}}
recipe: {{preset: classic, epochs: 1, batch_size: 32, warmup_epochs: 0, lr: 0.05}}
measure: {{flops_image_size: 32}}
variants:
  - {{name: batch}}
  - {{name: gn4, set: {{norm: gn4}}}}
  - {{name: pico, model: {{timm: pico_plugin_net}}}}
"""


@pytest.fixture(autouse=True)
def _own_registry():
    with registry.scope():
        yield


def write(tmp_path: Path, plugin: str = "plugs/mine.py", study: str = STUDY) -> Path:
    (tmp_path / "plugs").mkdir(parents=True, exist_ok=True)
    (tmp_path / "plugs" / "mine.py").write_text(PLUGIN)
    path = tmp_path / "plug.yaml"
    path.write_text(study.format(plugin=plugin))
    return path


def test_a_plugin_norm_and_a_plugin_model_run_end_to_end(cli, tmp_path: Path) -> None:  # noqa: F811
    path = write(tmp_path)
    code, out, err = cli("flops", str(path), "--format", "csv")
    assert code == 0, err
    counts = pd.read_csv(__import__("io").StringIO(out)).set_index("name")
    biases = 16 + 3 * 16 + 3 * 32 + 32  # of the convs a BatchNorm follows (stem, blocks, shortcut): it needs none
    assert counts.loc["gn4", "params"] == counts.loc["batch", "params"] + biases  # the norms: 2 per channel, both
    assert counts.loc["pico", "params"] == 3 * 8 * 16 + 8 + 8 * 1000 + 1000  # the plug-in's model, counted
    code, _, err = cli("run", str(path))
    assert code == 0, err
    results = pd.read_csv(tmp_path / "results" / "plug" / "results.csv").set_index("name")
    assert list(results["status"]) == ["done"] * 3
    assert results.loc["gn4", "norm"] == "gn4" and results.loc["pico", "model"] == "pico_plugin_net"
    code, _, err = cli("report", str(path), "--no-charts")
    assert code == 0, err
    report = next((tmp_path / "reports" / "plug").glob("*.md")).read_text()
    assert "gn4" in report and "pico" in report


def test_editing_a_plugin_makes_only_its_variants_trials_stale(cli, tmp_path: Path) -> None:  # noqa: F811
    path = write(tmp_path)
    assert cli("run", str(path))[0] == 0
    before = {v.name: v.id for v in load_study(path).variants}
    with registry.scope():  # (registration is process-wide: the copy's registrations are undone after)
        moved = write(tmp_path / "elsewhere")  # the same study and plug-in in another folder: the same ids
        assert {v.name: v.id for v in load_study(moved).variants} == before
    plugin = tmp_path / "plugs" / "mine.py"
    plugin.write_text(plugin.read_text().replace("groups of 4 channels", "groups of four channels"))
    after = {v.name: v.id for v in load_study(path).variants}
    assert after["batch"] == before["batch"]  # uses nothing the plug-in registered
    assert after["gn4"] != before["gn4"] and after["pico"] != before["pico"]
    code, out, _ = cli("status", str(path))
    assert code == 0 and "1 done" in out and "2 new" in out, out


def test_a_plugin_module_name_beside_the_study_and_an_entry_point(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, plugin="plugs.mine")  # a module name: found beside the study file
    assert [v.net.norm for v in load_study(path).variants if v.net] == ["batch", "gn4"]

    from importlib.metadata import EntryPoint

    (tmp_path / "installed_act.py").write_text(
        "import torch.nn as nn\nfrom ablate.config.registry import register_activation\n"
        "register_activation('my_tanh', nn.Tanh)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [
        EntryPoint("act", "installed_act", group)] if group == "ablate.plugins" else [])
    loaded = load_study(path, ["variants.0.set={activation: my_tanh}"])
    assert loaded.variants[0].net.activation == "my_tanh"


def test_a_plugin_stem_block_and_activation_are_built_and_counted(tmp_path: Path) -> None:
    (tmp_path / "parts.py").write_text('''
import torch.nn as nn
from ablate.config.registry import register_activation, register_block, register_model, register_stem


@register_stem("conv3", reduction=2)
def conv3(cfg, layers):
    return nn.Sequential(nn.Conv2d(cfg.in_chans, cfg.stem_out, 3, 2, 1), layers.norm(cfg.stem_out))


@register_activation("hardtanh")
def hardtanh():
    return nn.Hardtanh()


class Plain(nn.Module):
    """conv -> norm -> act, no shortcut (a VGG block)."""

    def __init__(self, in_chs, out_chs, hidden, stride, spec, drop_path=0.0):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, spec.kernel_size, stride, spec.kernel_size // 2)
        self.norm, self.act = spec.layers.norm(out_chs), spec.layers.act()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


register_block("plain", Plain)


@register_model
def parts_net(pretrained=False, **kwargs):
    return nn.Sequential(nn.Conv2d(kwargs.get("in_chans", 3), 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, kwargs.get("num_classes", 1000)))
''')
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nplugins: [parts.py]\nmodel: {depths: [1, 1], dims: [8, 16], stem: conv3, "
                     "block: plain, activation: hardtanh, kernel_size: 3}\ndata: {dataset: synthetic, image_size: 16}\n"
                     "measure: {flops_image_size: 16}\n")
    (v,) = load_study(study).variants
    assert v.train_net.feature_sizes(16) == [8, 4]  # the stem's registered reduction
    import torch

    from ablate.measure.table import count_study
    from ablate.nn.net import build

    net = build(v.train_net)
    assert type(net.stages[1].blocks[0]).__name__ == "Plain" and type(net.stem[0]).__name__ == "Conv2d"
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 10)
    (row,) = count_study(load_study(study), parallel=False, use_cache=False)
    conv = 3 * 8 * 9 + 8 + 2 * 8  # stem conv + its BatchNorm
    blocks = (8 * 8 * 9 + 8 + 2 * 8) + (8 * 16 * 9 + 16 + 2 * 16)
    assert row["params"] == conv + blocks + 16 * 1000 + 1000
    (m,) = load_study(study, ["model={timm: parts_net}"]).variants  # ablate's register_model: timm's, recorded
    assert m.timm == "parts_net" and registry.entry("model", "parts_net").module.endswith("_parts")


def test_the_example_plugin_study_validates() -> None:
    loaded = load_study(Path(__file__).resolve().parents[1] / "examples" / "plugin-norm.yaml")
    assert [v.net.norm if v.net else v.timm for v in loaded.variants] == ["layer", "batch", "ws_group", "tiny_mixer"]


@pytest.mark.parametrize(("plugins", "set_", "where", "words"), [
    ("[plugs/none.py]", None, "plugins[0]", "no such file"),
    ("[no_such_module_xyz]", None, "plugins[0]", "no module named 'no_such_module_xyz'"),
    ("[plugs/broken.py]", None, "plugins[0]", "ZeroDivisionError"),
    ("[plugs/mine.py]", "variants.1.set.norm=gn5", "variants[1].set.norm", "did you mean 'gn4'"),
    ("[]", None, "variants[1].set.norm", "unknown norm 'gn4'"),
])
def test_plugin_mistakes_are_one_line_naming_the_field(cli, tmp_path: Path, plugins: str, set_: str | None,  # noqa: F811
                                                       where: str, words: str) -> None:
    path = write(tmp_path)
    (tmp_path / "plugs" / "broken.py").write_text("1 / 0\n")
    path.write_text(path.read_text().replace("plugins: [plugs/mine.py]", f"plugins: {plugins}"))
    code, out, err = cli("validate", str(path), *(["--set", set_] if set_ else []))
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"{path}: {where}: ") and words in lines[0], lines[0]
