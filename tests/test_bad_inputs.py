"""A corpus of bad inputs: each one is exit 2, one line naming the file and the field, and nothing written.
In process (typer's CliRunner, through the one-line error handling of the real entry point `ablate.cli.main`),
no training; two runs of `python -m ablate` (subprocesses) check that the real entry point says the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from test_integrity import SYNTH, TINY, error_lines, write_study
from typer.testing import CliRunner

from ablate.cli import app


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """`ablate ARGS` in this process, in tmp_path: (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABLATE_OFFLINE", "1")

    def run(*args: str) -> tuple[int, str, str]:
        r = CliRunner().invoke(app, list(args), one_line_errors=True)
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info  # no exception escapes
        return r.exit_code, r.stdout, r.stderr

    return run


SET_CASES = {  # --set override -> the field the one line must name
    "recipe.batch_size=yes": "recipe.batch_size",
    "data.train_subset=on": "data.train_subset",
    "seeds=[0, no]": "seeds",
    "model.kernel_size=yes": "model.kernel_size",
    "model.layer_scale=on": "model.layer_scale",
    "recipe.lr=.inf": "recipe.lr",
    "recipe.weight_decay=.nan": "recipe.weight_decay",
    "model.drop_path=.nan": "model.drop_path",
    "model.dims=[16, .inf]": "model.dims",
    "recipe.opt=adamww": "recipe.opt",
    "recipe.opt=lookahead_nosuch": "recipe.opt",
    "recipe.randaugment=rand-m9-foo": "recipe.randaugment",
    "recipe.randaugment=rand-m99": "recipe.randaugment",
    "recipe.randaugment=rand-n0": "recipe.randaugment",
    "recipe.randaugment=augmix-m5": "recipe.randaugment",
    "recipe.crop_scale=[0.9, 0.1]": "recipe.crop_scale",
    "recipe.crop_scale=[0, 1.5]": "recipe.crop_scale",
    "recipe.sched=linear": "recipe.sched",
    "name=" + "x" * 101: "name",
    "name=a/b": "name",
    "variants.0.name=\"a\\nb\"": "variants[0].name",
    "exclude=[a]": "exclude",
    "model.dims=[200000, 400000]": "variants[0]",
    "data.image_size=100000": "data.image_size",
}


@pytest.mark.parametrize("override", list(SET_CASES))
def test_a_bad_value_is_one_line_naming_its_field(cli, tmp_path: Path, override: str) -> None:
    path = write_study(tmp_path)
    for command in ("validate", "run"):
        code, out, err = cli(command, str(path), "--set", override)
        assert code == 2, (command, out, err)
        lines = error_lines(err)
        assert len(lines) == 1 and lines[0].startswith(f"{path}: {SET_CASES[override]}: "), (command, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # nothing written


def test_large_networks_pass_with_allow_large(cli, tmp_path: Path) -> None:
    path = write_study(tmp_path)
    code, out, _ = cli("validate", str(path), "--set", "model.dims=[200000, 400000]", "--allow-large")
    assert code == 0 and "ok" in out


SEARCH = TINY.format(name="s", data=SYNTH) + "search: {sampler: random, trials: 2, space: {recipe.lr: DIM}}\n"
def _bomb(levels: int = 6) -> str:
    """A flow sequence of 10^levels values in a few hundred bytes: each level is ten aliases of the one below."""
    text = "[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"
    for i in range(1, levels):
        text = f"[&l{i} {text}" + f", *l{i}" * 9 + "]"
    return text


FILE_CASES = {  # study text -> the "<field>: <problem start>" of the one line
    "high below low": (SEARCH.replace("DIM", "{low: 0.1, high: 0.01}"), "search.space.recipe.lr: high (0.01)"),
    "log with low 0": (SEARCH.replace("DIM", "{low: 0, high: 1, log: true}"), "search.space.recipe.lr: a log range"),
    "range of booleans": (SEARCH.replace("DIM", "{low: 0.1, high: yes}"), "search.space.recipe.lr: high: expected"),
    "dimension a number": (SEARCH.replace("DIM", "3"), "search.space.recipe.lr: a list of choices"),
    "huge grid": (TINY.format(name="s", data=SYNTH) + "grid: {kernel_size: [1, 3, 5, 7, 9, 11, 13], "
                  "drop_path: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], recipe.lr: [1, 2, 3, 4, 5, 6, 7], "
                  "recipe.epochs: [1, 2, 3, 4, 5, 6, 7]}\n", "grid: 2,401 variants: more than 2,000"),
    "unhashable key": ("name: s\n? [a, b]\n: 1\n", "line 2: a key must be a plain value, not a list"),
    "mapping as key": ("name: s\n{a: 1}: 1\n", "line 2: a key must be a plain value, not a dict"),
    "deep nesting": ("name: s\nmodel: " + "[" * 3000 + "]" * 3000 + "\n", "invalid YAML: nested too deeply"),
    "not a study": ("user: admin\npassword: hunter2\n", "not a study file: none of its 2 keys"),
    # a few hundred bytes of YAML aliases that expand to millions of values: refused before anything copies them
    "alias bomb in grid": (TINY.format(name="s", data=SYNTH) + f"grid: {{kernel_size: {_bomb()}}}\n",
                           "its YAML aliases (&name / *name) expand to more than 100,000 values"),
    "alias bomb elsewhere": (TINY.format(name="s", data=SYNTH) + f"description: {_bomb()}\nvariants: [{{name: a}}]\n",
                             "its YAML aliases (&name / *name) expand to more than 100,000 values"),
    "self-holding alias": (TINY.format(name="s", data=SYNTH) + "grid: &g {kernel_size: [*g, *g, *g, *g, *g]}\n",
                           "its YAML aliases (&name / *name) expand to more than 100,000 values"),
    # integers a library takes only in a range: refused by validate, not by torch or numpy after the ledger
    "seed beyond int64": (TINY.format(name="s", data=SYNTH) + "seeds: [0, 18446744073709551616]\n"
                          "variants: [{name: a}]\n", "seeds[1]: Input should be less than or equal to"),
    "search.seed beyond 2^32": (SEARCH.replace("DIM", "[0.1, 0.2]").replace("trials: 2", "trials: 2, seed: 4294967296"),
                                "search.seed: Input should be less than or equal to 4294967295"),
    "negative search.seed": (SEARCH.replace("DIM", "[0.1, 0.2]").replace("trials: 2", "trials: 2, seed: -1"),
                             "search.seed: Input should be greater than or equal to 0"),
    # a search objective that no trial measures
    "ema_top1 with EMA off": (SEARCH.replace("DIM", "[0.1, 0.2]").replace("random,", "random, objective: ema_top1,"),
                              "search.objective: ema_top1 needs the EMA of the weights"),
    "ema_top1 with EMA off in the space": (
        SEARCH.replace("DIM", "[0.1, 0.2], recipe.ema: [0.99, null]").replace("random,", "random, objective: ema_top1,")
        .replace("classic,", "modern,"), "search.objective: ema_top1 needs the EMA of the weights"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_a_bad_study_file_is_one_line(cli, tmp_path: Path, case: str) -> None:
    text, expect = FILE_CASES[case]
    path = tmp_path / "s.yaml"
    path.write_text(text)
    code, _, err = cli("validate", str(path))
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: {expect}"), err
    assert "hunter2" not in err and "admin" not in err  # no error echoes what an arbitrary file holds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


@pytest.mark.parametrize("case", ["run --set", "not a study"])
def test_the_real_entry_point_says_the_same(cli, tmp_path: Path, case: str) -> None:
    """`python -m ablate` (a subprocess: exit code and stderr exactly as a user sees them) ends as the in-process
    runs do: exit 2, the same one line, no traceback."""
    if case == "run --set":
        path = write_study(tmp_path)
        args = ("run", str(path), "--set", "recipe.batch_size=yes")
    else:
        path = tmp_path / "s.yaml"
        path.write_text(FILE_CASES["not a study"][0])
        args = ("validate", str(path))
    r = run_cli(*args, cwd=tmp_path, env={"ABLATE_OFFLINE": "1"})
    assert r.returncode == 2 and len(error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr, r.stderr
    assert (r.returncode, r.stdout, r.stderr) == cli(*args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


@pytest.mark.parametrize("target", ["/dev/zero", "folder", "binary"])
def test_files_that_are_not_studies(cli, tmp_path: Path, target: str) -> None:
    if target == "folder":
        path = tmp_path / "folder"
        path.mkdir()
    elif target == "binary":
        path = tmp_path / "x.yaml"
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    else:
        path = Path(target)
    for study in (str(path), None):
        if study is None:  # the same file named by `extends:`
            child = tmp_path / "child.yaml"
            child.write_text(f"name: child\nextends: {path}\n")
            study = str(child)
        code, _, err = cli("validate", study)
        assert code == 2 and len(error_lines(err)) == 1, err


def test_an_error_in_an_extends_parent_names_the_parent(cli, tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    parent = tmp_path / "base" / "parent.yaml"
    parent.write_text(TINY.format(name="parent", data=SYNTH).replace("batch_size: 32", "batch_size: yes")
                      + "steps:\n  - {name: a}\n  - {name: b, set: {kernel_size: 4}}\n")
    child = tmp_path / "child.yaml"
    child.write_text("name: child\nextends: base/parent.yaml\nrecipe: {epochs: 2}\n")
    code, _, err = cli("validate", str(child))
    assert code == 2
    assert error_lines(err)[0].startswith(f"{parent}: recipe.batch_size: expected a number, got the YAML boolean")
    assert error_lines(err)[0].endswith(f"(inherited by {child} through extends:)")
    child.write_text("name: child\nextends: base/parent.yaml\nrecipe: {batch_size: 8}\n")
    code, _, err = cli("validate", str(child))
    assert code == 2 and error_lines(err)[0].startswith(f"{parent}: steps[1].set.kernel_size: must be odd")
    code, _, err = cli("validate", str(child), "--set", "steps.1.set.kernel_size=6")  # the child's own value
    assert code == 2 and error_lines(err)[0].startswith(f"{child}: steps[1].set.kernel_size: must be odd")


def test_a_long_extends_chain_blames_the_file_that_wrote_the_field(cli, tmp_path: Path) -> None:
    """Blame walks the whole chain the loader merged (not its first 50 files); a chain longer than the loader
    takes is one line too."""
    root = tmp_path / "f0.yaml"
    root.write_text(TINY.format(name="chain", data=SYNTH) + "variants: [{name: a, set: {kernel_size: 4}}]\n")
    for i in range(1, 60):
        (tmp_path / f"f{i}.yaml").write_text(f"extends: f{i - 1}.yaml\ndescription: level {i}\n")
    code, _, err = cli("validate", str(tmp_path / "f59.yaml"))
    assert code == 2 and error_lines(err)[0].startswith(f"{root}: variants[0].set.kernel_size: must be odd"), err
    for i in range(60, 260):
        (tmp_path / f"f{i}.yaml").write_text(f"extends: f{i - 1}.yaml\n")
    code, _, err = cli("validate", str(tmp_path / "f259.yaml"))
    assert code == 2 and len(error_lines(err)) == 1 and "extends: a chain of more than 200 study files" in err, err


def test_yaml_merge_keys_work(cli, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("""
name: m
model: &base {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}
data: {dataset: synthetic, image_size: 16}
variants:
  - {name: a}
  - name: b
    set:
      <<: *base
      kernel_size: 5
""")
    code, out, err = cli("validate", str(path))
    assert code == 0 and "2 variants" in out, err


STORAGE_CASES = {
    "postgresql://bob:s3cret@127.0.0.1:1/db": "cannot open: connection to server",
    "foo://bob:s3cret@host/db": "cannot open: ",
    "postgresql://bob:s3cret@host:notaport/db": "is not a storage URL",
    "postgresql+nodriver://bob:s3cret@host/db": "cannot open: ",
    "mysql://bob:s3cret@localhost/db": "",
    "://": "is not a storage URL",
    "postgresql://bob@127.0.0.1:1/db?password=s3cret": "cannot open: connection to server",  # libpq's own spelling
    "postgresql://127.0.0.1:1/db?user=bob&sslpassword=s3cret&connect_timeout=1": "cannot open: ",
    "postgresql://bob:ab@s3cret@127.0.0.1:1/db": "holds an '@': write it as %40",  # an unescaped '@'
    "postgresql://bob:ab%40s3cret@127.0.0.1:1/db": "cannot open: connection to server",
}


@pytest.mark.parametrize("url", list(STORAGE_CASES))
def test_a_bad_storage_url_is_one_line_without_the_password(cli, tmp_path: Path, url: str) -> None:
    path = write_study(tmp_path)
    for command in ("status", "run", "worker", "report"):
        code, _, err = cli(command, str(path), "--storage", url)
        assert code == 2, (command, err)
        lines = error_lines(err)
        assert len(lines) == 1 and lines[0].startswith("--storage: ") and STORAGE_CASES[url] in lines[0], err
        assert "s3cret" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


@pytest.mark.parametrize("kind", ["folder", "other file"])
def test_a_sqlite_path_that_is_no_database(cli, tmp_path: Path, kind: str) -> None:
    path = write_study(tmp_path)
    target = tmp_path / "thing"
    if kind == "folder":
        target.mkdir()
    else:
        target.write_text("hello\n")
    for command in ("status", "run"):
        code, _, err = cli(command, str(path), "--storage", f"sqlite:///{target}")
        assert code == 2 and len(error_lines(err)) == 1 and "not an SQLite database" in err, err
    assert not (tmp_path / "results").exists() and (kind == "folder" or target.read_text() == "hello\n")
