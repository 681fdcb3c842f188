"""The second notebook's plumbing: its part of log/results.json written beside the first notebook's (study.how_far,
report.save_results), the one rule for "better" on validation (study.wins), and the links between the notebooks."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study import how_far, readme, report, wins

REPO = Path(__file__).resolve().parent.parent


def _part(accuracy=0.9060):
    comparison = pd.DataFrame([{"model": "(c) wide", "settings": "784-1024-1024-10", "val_accuracy": 0.9125,
                                "test_accuracy": accuracy, "test_loss": 0.33, "epochs": 40, "train_time_s": 400.0}])
    return how_far.results(comparison=comparison, beyond_test=(accuracy, 0.33, 10000), candidates=pd.DataFrame(),
                           ablation={"table": comparison, "mcnemar": pd.DataFrame()}, budget_rule={"chosen": 40},
                           validation=pd.DataFrame([{"model": "a", "verdict": "tie"}]), frontier={"chosen": "x"},
                           finals={"chosen": "y"}, wall_s={"beyond": 11.0, "notebook": 60.0})


def test_each_notebook_writes_its_own_keys_and_keeps_the_others(tmp_path):
    path = tmp_path / "results.json"
    first = {"quick": False, "runs_trained": 48, "test": {"accuracy": 0.8935}, "notebook_wall_time_s": 3000.0}
    report.save_results(path, first)
    report.save_results(path, _part(), runs_trained=0)  # a part the file lacks is written, even with nothing trained
    both = json.loads(path.read_text())
    assert set(both) == {*first, *how_far.KEYS, "machine", "written_at"}
    assert both["test"] == {"accuracy": 0.8935} and both["beyond"]["test_accuracy"] == 0.9060
    text = path.read_bytes()
    again = _part()
    again["how_far"]["notebook_wall_time_s"] = 1.0  # another execution's wall time is not another number
    report.save_results(path, again, runs_trained=0)
    assert path.read_bytes() == text
    with pytest.raises(ValueError, match=r"other numbers .*\['ablation', 'beyond'\]"):
        report.save_results(path, _part(accuracy=0.9061), runs_trained=0)
    report.save_results(path, first)  # the first notebook trained again: the second's keys stay
    assert json.loads(path.read_text())["beyond"]["test_accuracy"] == 0.9060


def test_a_lead_that_mcnemar_cannot_see_is_a_tie():
    y = np.zeros(1000, dtype=int)
    reference = np.where(np.arange(1000) < 900, 0, 1)  # 900 right
    close = reference.copy()
    close[900:920], close[:11] = 0, 1  # 20 images only it gets right, 11 only the reference: a lead of 9, a tie
    far = reference.copy()
    far[900:960] = 0  # 60 more right: a win
    worse = reference.copy()
    worse[:60] = 1
    table = wins.paired_verdicts(y, {"ref": reference, "close": close, "far": far, "worse": worse}, "ref")
    assert table["verdict"].tolist() == ["tie", "better", "worse"]
    assert table["lead_images"].tolist() == [9, 60, -60]
    assert "close against ref: +9 validation images" in wins.describe_verdicts(table)


def test_each_step_of_a_growing_ensemble_is_judged_against_the_one_before():
    y = np.array([0, 1, 2, 0])
    probabilities = {"a": np.eye(3)[[0, 1, 1, 1]], "b": np.eye(3)[[0, 1, 2, 2]] * 2}
    grown = wins.growing_predictions(probabilities, ["a", "b"])
    assert list(grown) == ["a", "a + b"]
    assert grown["a + b"].tolist() == [0, 1, 2, 2]
    steps = wins.steps_against_previous(y, grown)
    assert steps.loc[0, ["model", "reference", "lead_images"]].tolist() == ["a + b", "a", 1]
    alone = wins.steps_against_previous(y, wins.growing_predictions(probabilities, ["a"]))  # a one-member ensemble
    assert alone.empty and list(alone.columns) == wins.VERDICT_COLUMNS


def test_sections_link_within_their_notebook_or_to_the_other():
    first = "Fashion_mnist_model.ipynb"
    assert readme.section_link(7, here=how_far.NOTEBOOK) == "[7](#section-7)"
    assert readme.section_link(5, here=how_far.NOTEBOOK) == f"[5 ({first})]({first}#section-5)"
    assert readme.section_link(8, here=first) == "[8](#section-8)"
    assert readme.section_link(10) == f"[10 ({how_far.NOTEBOOK})]({how_far.NOTEBOOK}#section-10)"
    assert set(how_far.SECTIONS) == set(readme.NOTEBOOKS[how_far.NOTEBOOK])
    assert not set(readme.NOTEBOOKS[first]) & set(how_far.SECTIONS)  # the study numbers each section once


def test_each_row_at_a_glance_links_the_heading_of_its_own_section():
    """Every section a row of the glance names is a heading of that notebook (``<a id="section-N">``)."""
    import nbformat

    results = report.read_results(REPO / "log" / "results.json")
    for _, _, _, number in readme.glance_rows(results):
        notebook = next(name for name, numbers in readme.NOTEBOOKS.items() if number in numbers)
        cells = nbformat.read(REPO / notebook, as_version=4).cells
        assert any(f'<a id="section-{number}"></a>' in cell.source for cell in cells), (notebook, number)


def test_the_readme_shows_each_win_with_its_verdict():
    text = readme.validation_section([{"model": "smoothing", "reference": "shifts", "val_accuracy": 0.9207,
                                       "lead_images": 9, "p_value": 0.5235, "verdict": "tie"}])
    assert "| smoothing | shifts | 0.9207 | +9 | 0.52 | tie |" in text


def test_a_long_job_s_part_is_written_anew_as_its_records_land(tmp_path):
    """Section 10's progress moves with the job's records, not with what the notebook trains: an execution that
    trained nothing writes it anew, and still refuses any other number that moved."""
    path = tmp_path / "results.json"
    progress = {"runs": 12, "done": 0, "finished": False, "targets": {"single": 0.925, "ensemble": 0.93}}
    report.save_results(path, dict(_part(), teacher=progress), runs_trained=1)
    written = report.save_results(path, dict(_part(), teacher=dict(progress, done=2)), runs_trained=0)
    assert written["teacher"]["done"] == 2 and json.loads(path.read_text())["teacher"]["done"] == 2
    with pytest.raises(ValueError, match=r"other numbers .*'beyond'") as refused:
        report.save_results(path, dict(_part(accuracy=0.9061), teacher=dict(progress, done=3)), runs_trained=0)
    assert "teacher" not in str(refused.value)
