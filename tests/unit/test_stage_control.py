"""The protocol between `letgo stage up` and the other `letgo` commands (letgo/stage_control.py), on files in a
temporary folder and a stand-in for the stage process (the real one: `letgo stage up`, e.g. in `make run`)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import orjson
import pytest

from letgo import stage_control
from letgo.stage_control import StageNotRunning, StageUnresponsive

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def files(tmp_path, monkeypatch):
    monkeypatch.setattr(stage_control, "STAGE_FILE", tmp_path / "stage.json")
    monkeypatch.setattr(stage_control, "CONTROL_FILE", tmp_path / "statistics-control.json")
    return tmp_path


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    left: int = 0

    def describe(self) -> str:
        return "search-indexer: 1 on-failure messages, 1 recovered, 0 left"


class FakeProcess:
    """What `_serve` asks of the stage process: pause/resume the statistics, recover the indexer's queue."""

    def __init__(self) -> None:
        self.running, self.resumed_at, self.recovered = True, [], 0
        self.lanes_used: list[str] = []

    def in_lane(self, name, job):
        self.lanes_used.append(name)  # the real process runs it in that lane's thread, between two polls
        return job()

    def pause_statistics(self) -> bool:
        was, self.running = self.running, False
        return was

    def resume_statistics(self, at: float | None) -> bool:
        if self.running:
            return False
        self.running = True
        self.resumed_at.append(at)
        return True

    def recover_indexer(self, progress):
        progress(7)
        self.recovered += 1
        return Report()


def test_control_merges_updates_and_reads_back():
    assert stage_control.control() == {}
    stage_control.control(statistics="running", resume_at=None)
    assert stage_control.control(resume_at=12.5) == {"statistics": "running", "resume_at": 12.5}
    assert stage_control.control() == {"statistics": "running", "resume_at": 12.5}


def test_serve_pause_then_resume_reports_each_state_and_resumes_where_asked():
    process = FakeProcess()
    stage_control.control(statistics="running", resume_at=None)
    stage_control._serve(process, "pause")
    assert stage_control.control()["statistics"] == "paused" and not process.running
    stage_control.control(statistics="stale")
    stage_control._serve(process, "pause")  # already paused: nothing to report
    assert stage_control.control()["statistics"] == "stale"
    stage_control.control(resume_at=1_800_000_000.0)
    stage_control._serve(process, "resume")
    assert stage_control.control()["statistics"] == "running" and process.resumed_at == [1_800_000_000.0]
    assert set(process.lanes_used) == {"statistics"}


def test_serve_recover_reports_progress_then_the_report():
    process = FakeProcess()
    stage_control.control(recovery=None, recovery_progress=0)
    stage_control._serve(process, "recover")
    state = stage_control.control()
    assert process.recovered == 1 and state["recovery_progress"] == 7 and process.lanes_used == ["search-indexer"]
    assert state["recovery"] == {"describe": Report().describe(), "problems": [], "left": 0}


def test_wait_for_a_state_the_stage_never_reports_is_unresponsive():
    stage_control.control(statistics="running")
    stage_control.wait_for("running", timeout=0.2)
    with pytest.raises(StageUnresponsive, match="did not report statistics paused"):
        stage_control.wait_for("paused", timeout=0.2)


def test_stage_info_without_a_running_stage_says_how_to_start_one():
    with pytest.raises(StageNotRunning, match=r"`letgo stage up` \(or pass --dsn\)"):
        stage_control.stage_info("(or pass --dsn)")


def test_stage_info_points_this_process_at_the_stage(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere")  # restored after the test
    stage_control.STAGE_FILE.write_bytes(orjson.dumps({"pid": 1, "stream": "s",
                                                       "env": {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}}))
    assert stage_control.stage_info()["stream"] == "s"
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"


def test_stop_stage_without_a_stage_or_with_its_process_gone():
    said: list[str] = []
    stage_control.stop_stage(said.append)
    stage_control.STAGE_FILE.write_bytes(orjson.dumps({"pid": 999_999_999}))  # no such process
    stage_control.stop_stage(said.append)
    assert said == ["no local stage is running", "the stage process 999999999 was already gone; cleaned up"]
    assert not stage_control.STAGE_FILE.exists()
