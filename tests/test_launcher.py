"""The cluster launcher's parts that need no SLURM: where its settings come from, and the refusal of a ledger file
on a network file system (the run on a real SLURM: tests/test_slurm.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.commands.launch import launcher_spec
from ablate.config.errors import StudyError
from ablate.config.load import load_study
from ablate.sweep.netfs import check_shared_ledger, filesystem
from ablate.sweep.options import LedgerError, LedgerOptions

MOUNTS = """overlay / overlay rw 0 0
tmpfs /tmp tmpfs rw 0 0
fs1:/home /home nfs4 rw,vers=4.2 0 0
10.0.0.1@tcp:/scratch /scratch lustre rw 0 0
/dev/sda1 /home/me/local\\040disk ext4 rw 0 0
"""

STUDY = """name: launched
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}
data: {dataset: synthetic, image_size: 16, train_subset: 64, val_subset: 32}
launcher: {partition: gpu, time: 120, gpus_per_worker: 1, sbatch: {qos: normal}}
variants: [{name: a}]
"""


def test_the_file_system_of_a_path_is_its_longest_mount_point() -> None:
    assert filesystem(Path("/home/me/results"), MOUNTS) == "nfs4"
    assert filesystem(Path("/home/me/local disk/results"), MOUNTS) == "ext4"
    assert filesystem(Path("/scratch"), MOUNTS) == "lustre"
    assert filesystem(Path("/homework"), MOUNTS) == "overlay"


def test_a_ledger_file_on_a_network_file_system_is_refused_unless_insisted_on() -> None:
    with pytest.raises(LedgerError, match=r"ledger.journal: .*network file system \(nfs4\).*postgresql://"):
        check_shared_ledger(None, Path("/home/me/results/s"), insist=False, mounts=MOUNTS)
    with pytest.raises(LedgerError, match=r"lustre"):
        check_shared_ledger("sqlite:////scratch/ledger.db", Path("/tmp/s"), insist=False, mounts=MOUNTS)
    check_shared_ledger(None, Path("/home/me/results/s"), insist=True, mounts=MOUNTS)
    check_shared_ledger("postgresql://me@db/ablate", Path("/home/me/results/s"), insist=False, mounts=MOUNTS)
    check_shared_ledger("/tmp/s/ledger.journal", Path("/home/x"), insist=False, mounts=MOUNTS)


def test_launcher_settings_come_from_the_study_then_a_config_file_then_the_options(tmp_path: Path) -> None:
    path = tmp_path / "launched.yaml"
    path.write_text(STUDY)
    loaded = load_study(path)
    profile = tmp_path / "cluster.yaml"
    profile.write_text("partition: a100\naccount: lab\nsbatch: {constraint: a100}\n")
    spec = _spec(loaded, tmp_path, profile, time=30, workers=8, sbatch=["qos=high"])
    assert (spec.partition, spec.time, spec.workers, spec.gpus_per_worker, spec.account) == ("a100", 30, 8, 1, "lab")
    assert spec.sbatch == {"constraint": "a100", "qos": "high"}
    with pytest.raises(StudyError, match="--sbatch.*'qos' is not KEY=VALUE"):
        _spec(loaded, tmp_path, None, sbatch=["qos"])
    profile.write_text("partitions: a100\n")
    with pytest.raises(StudyError, match="cluster.yaml.*not a launcher config"):
        _spec(loaded, tmp_path, profile)


def _spec(loaded, results: Path, config: Path | None, **given):
    """launcher_spec with the options not given left None, as the CLI passes them."""
    options = dict.fromkeys(("partition", "time", "workers", "gpus_per_worker", "cpus_per_worker", "account",
                             "sbatch", "network_journal"))
    return launcher_spec(loaded, LedgerOptions(None, results), config, **{**options, **given})


def test_run_refuses_a_journal_on_nfs_before_writing_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ablate import cli
    from ablate.sweep import netfs

    path = tmp_path / "launched.yaml"
    path.write_text(STUDY)
    monkeypatch.setattr(netfs, "filesystem", lambda *_: "nfs4")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here: refused for that first
    r = CliRunner().invoke(cli.app, ["run", str(path), "--launcher", "slurm", "--results", str(tmp_path / "r")],
                           one_line_errors=True)
    assert r.exit_code == 2 and "--launcher slurm: sbatch is not on the PATH" in r.output, r.output
    (tmp_path / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "sbatch").chmod(0o755)
    r = CliRunner().invoke(cli.app, ["run", str(path), "--launcher", "slurm", "--results", str(tmp_path / "r")],
                           one_line_errors=True)
    assert r.exit_code == 2, r.output
    assert "ledger.journal: the ledger file is on a network file system (nfs4)" in r.output
    assert "--network-journal" in r.output and not (tmp_path / "r").exists()
