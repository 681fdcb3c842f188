"""study.timing: the sections of the notebook announce themselves and their wall times."""

import pytest

from study import timing


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_sections_print_their_start_and_their_time(capsys):
    clock = Clock()
    sections = timing.Sections(clock)
    sections.start("3. Hyperparameter tuning")
    clock.now += 612
    assert sections.end() is None
    sections.start("4. Train")
    clock.now += 30
    sections.start("5. Test")  # a section left open ends when the next one starts
    clock.now += 2
    sections.end()
    assert capsys.readouterr().out.splitlines() == [
        "== 3. Hyperparameter tuning", "== 3. Hyperparameter tuning: 10.2 min", "== 4. Train", "== 4. Train: 30 s",
        "== 5. Test", "== 5. Test: 2 s"]
    assert sections.times == {"3. Hyperparameter tuning": 612, "4. Train": 30, "5. Test": 2}
    assert sections.total() == 644


def test_ending_without_a_section_open_is_an_error():
    sections = timing.Sections(Clock())
    with pytest.raises(RuntimeError, match="no section is open"):
        sections.end()
