"""study.reproduce: which comparison applies, and the recorded runs trained again to their committed numbers."""

import subprocess
import sys

import pytest

from study import reproduce

HASWELL = [{"internal_api": "openblas", "version": "0.3.31.188.0", "architecture": "Haswell"}]


def test_the_same_kernels_allow_no_difference_and_others_the_rounding_s_spread():
    diffs = {"iteration": 0.0, "train_loss": 0.001, "val_acc": 0.02, "best_val_acc (row)": 0.0}
    assert reproduce.out_of_bounds(diffs, exact=True) == ["train_loss", "val_acc"]
    assert reproduce.out_of_bounds(diffs, exact=False) == ["val_acc"]  # 2 points: more than rounding explains
    assert reproduce.out_of_bounds({"epoch": 1.0}, exact=False) == ["epoch"]  # the schedule never moves


def test_a_kernel_family_is_runnable_only_with_its_instructions(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert reproduce.runnable("Haswell", cpuinfo)
    assert not reproduce.runnable("SkylakeX", cpuinfo)
    assert not reproduce.runnable("SomeFutureCore", cpuinfo)  # not known: not set
    assert not reproduce.runnable("Haswell", tmp_path / "missing")


def test_the_recorded_kernels_are_set_for_the_command_s_own_process(tmp_path, monkeypatch):
    calls = []
    monkeypatch.delenv(reproduce.SET, raising=False)
    monkeypatch.setattr(reproduce, "recorded_kernels", lambda log_dir: HASWELL)
    monkeypatch.setattr(reproduce, "runnable", lambda family: family == "Haswell")
    monkeypatch.setattr(reproduce, "kernels", lambda: [dict(HASWELL[0], architecture="SkylakeX")])
    monkeypatch.setattr(subprocess, "run", lambda command, env: calls.append((command, env)) or
                        subprocess.CompletedProcess(command, 0))
    assert reproduce.main(["--log-dir", str(tmp_path)]) == 0
    [(command, env)] = calls
    assert command == [sys.executable, "-m", "study.reproduce", "--log-dir", str(tmp_path)]
    assert env["OPENBLAS_CORETYPE"] == "Haswell" and env[reproduce.SET] == "1"


@pytest.mark.real_data
def test_the_final_model_s_first_epoch_is_retrained_to_its_committed_numbers(fashion_mnist, capsys):
    """On this process's kernels: bit for bit when they are the recorded ones, else within the tolerances."""
    exact = reproduce.kernels() == reproduce.recorded_kernels()
    check = reproduce.Check("final model", "models.csv", "best_model", 1)
    assert reproduce.run_checks(exact, checks=[check]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "val_acc" in out
    if exact:
        assert all(line.endswith("largest difference 0") for line in out.splitlines()[1:])
