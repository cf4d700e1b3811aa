"""The Gaia ingest's progress line: rows/s and an ETA that hold over thousands of files."""
from __future__ import annotations

import io

from astrodb.ingest.gaia import FileOutcome, Progress, _duration


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_rate_and_eta_follow_the_files_loaded_by_this_run_not_the_ones_skipped():
    out = io.StringIO()  # a log file: a line per update here (log_every=0)
    p = Progress(4000, 4000 * 100, stream=out, enabled=True, log_every=0.0)
    t = p.start
    for k in range(1000):  # a resumed load: the first 1000 files were loaded by an earlier run
        p.update(FileOutcome(f"f{k}", "skipped"), 100, now=t + 0.001 * k)
    t += 1.0
    for k in range(1000):  # then 1000 files of 500 rows, 10 files per second
        p.update(FileOutcome(f"g{k}", "loaded", 500), 100, now=t + 0.1 * (k + 1))
    last = _lines(out)[-1]
    # 2000 files left at 10 files/s (over 101 s: 202 s); rows/s over the whole run (101 s)
    assert last == "[2,000/4,000 files] 500,000 rows, 4,950 rows/s, ETA 3 min", last
    p.update(FileOutcome("bad", "failed", 0, "broken"), 100, now=t + 101.0)
    assert "ETA" in _lines(out)[-1] and "[2,001/4,000 files]" in _lines(out)[-1]


def test_the_window_forgets_an_early_slow_phase():
    out = io.StringIO()
    p = Progress(10_000, 10_000 * 100, stream=out, enabled=True, log_every=0.0)
    t = p.start
    for k in range(100):  # slow start: 1 file/s
        p.update(FileOutcome(f"a{k}", "loaded", 10), 100, now=t + k + 1)
    t += 100.0
    for k in range(5000):  # then 10 files/s for 500 s, longer than the window
        p.update(FileOutcome(f"b{k}", "loaded", 10), 100, now=t + 0.1 * (k + 1))
    assert _lines(out)[-1].endswith("ETA 8 min"), _lines(out)[-1]  # 4900 files left at 10/s: 490 s


def test_a_log_file_gets_a_line_every_so_often_and_the_last_one():
    out = io.StringIO()
    p = Progress(100, 100, stream=out, enabled=True, log_every=30.0)
    for k in range(100):
        p.update(FileOutcome(f"f{k}", "loaded", 1), 1, now=p.start + k)
    lines = _lines(out)
    assert len(lines) == 4 and lines[-1].startswith("[100/100 files]") and lines[-1].endswith("done")
    assert "\r" not in out.getvalue()
    quiet = io.StringIO()
    Progress(1, 1, stream=quiet).update(FileOutcome("f", "loaded", 1), 1)  # not a terminal: silent
    assert quiet.getvalue() == ""


def test_durations_read_at_a_glance():
    assert [_duration(s) for s in (42, 119.4, 1020, 18_480, 54_000)] == ["42 s", "119 s", "17 min", "5 h 08 min",
                                                                         "15 h 00 min"]
