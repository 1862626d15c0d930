"""The forgetting matrix R[stage][task] and backward transfer (Lopez-Paz & Ranzato, 2017)."""
import json

import pytest

from minillm.evaluation import ForgettingMatrix, backward_transfer


def test_backward_transfer_of_a_square_matrix_follows_the_paper():
    # stage i trains task i; after the last stage task 0 dropped 30 and task 1 dropped 20
    R = [[80, 10, 5],
         [60, 90, 0],
         [50, 70, 85]]
    assert backward_transfer(R) == pytest.approx(((50 - 80) + (70 - 90)) / 2)


def test_backward_transfer_with_a_multitask_first_stage():
    # stage 0 trains A, B and C together, stage 1 trains D: BWT averages A, B, C only
    R = [[80, 70, 60, 5],
         [40, 65, 60, 90]]
    assert backward_transfer(R, learned_at=[0, 0, 0, 1]) == pytest.approx((-40 - 5 + 0) / 3)


def test_backward_transfer_is_positive_when_later_training_helps():
    assert backward_transfer([[50, 0], [60, 90]]) == 10


def test_backward_transfer_needs_a_task_learned_before_the_last_stage():
    with pytest.raises(ValueError, match="at least one task"):
        backward_transfer([[50, 60]], learned_at=[0, 0])
    with pytest.raises(ValueError, match="one score per task"):
        backward_transfer([[1, 2], [3]])


def test_forgetting_matrix_records_stages_and_reports_changes():
    m = ForgettingMatrix(["A", "B", "D"], learned_at={"A": 0, "B": 0, "D": 1})
    m.record("base", {"A": 80, "B": 60, "D": 0})
    scores = m.measure("fine-tune D", {"A": 50, "B": 60, "D": 90}.__getitem__)
    assert scores == {"A": 50, "B": 60, "D": 90}
    assert m.R == [[80, 60, 0], [50, 60, 90]]
    assert m.change("D") == 90 and m.change("A") == -30
    assert m.backward_transfer() == pytest.approx(-15)
    data = json.loads(m.to_json())
    assert data["stages"] == ["base", "fine-tune D"] and data["backward_transfer"] == pytest.approx(-15)


def test_forgetting_matrix_rejects_a_row_with_a_missing_task():
    m = ForgettingMatrix(["A", "B"])
    with pytest.raises(KeyError, match="'B'"):
        m.record("base", {"A": 1.0})


def test_forgetting_table_has_one_row_per_stage_and_one_column_per_task():
    m = ForgettingMatrix(["A", "B"])
    m.record("base", {"A": 80, "B": 5})
    m.record("train B", {"A": 50.5, "B": 90})
    lines = m.table().splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["after stage", "A", "B"]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["train B", "50.50", "90.00"]
    assert len(lines) == 4


def test_forgetting_plot_writes_an_image(tmp_path):
    pytest.importorskip("matplotlib")
    m = ForgettingMatrix(["A", "B"])
    m.record("base", {"A": 80, "B": 5})
    m.record("train B", {"A": 50, "B": 90})
    path = m.plot(str(tmp_path / "forgetting.png"))
    assert path and (tmp_path / "forgetting.png").read_bytes()[:4] == b"\x89PNG"
