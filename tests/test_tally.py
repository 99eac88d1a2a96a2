"""The one typed tally (soak.metrics.Tally) of an interval and of a run:
adding up, its wire form (worker to parent) and its file forms
(intervals.jsonl, summary.json's totals, and the reader of both)."""

from __future__ import annotations

import json
from pathlib import Path

from soak.metrics import FAMILIES, HISTOGRAMS, Interval, Metrics, Tally, read_totals
from soak.recorder import interval_record
from soak.summary import latencies, totals

# intervals.jsonl's two lines, summary.json's totals and latencies of the
# run below, as written before the tally existed (byte for byte), plus the
# interval's client-seconds (connected_s, target_s, availability), added
# deliberately with availability (issue 23)
FILE_FORM = Path(__file__).parent / "fixtures" / "tally_file_form.jsonl"


def fill(m: Metrics) -> None:
    m.count("pings", 7)
    m.count("pongs", 5)
    m.count("missed", 2)
    m.count("late")
    for seconds in (0.0011, 0.0023, 0.250, 3.5):
        m.record("rtt", seconds)
    m.record("rtt_service", 0.001)
    m.record("lag", 0.006)
    m.record("lag", 0.0071)
    m.record("connect", 0.012)
    m.record("rtt", 7200.0)  # beyond the range: dropped
    m.close("client_shutdown", "tester", 1001)
    m.close("server_1012_service_restart", "server", 1012)
    m.close("client_shutdown", "tester", 1001)
    m.handshake_failure("refused")
    m.handshake_failure("timeout")
    m.handshake_failure("refused")
    m.gc_pause(0.0004)
    m.gc_pause(0.0021)


def two_intervals() -> tuple[Metrics, Interval, Interval]:
    m = Metrics()
    fill(m)
    cur = m.current
    cur.connected, cur.connecting, cur.target, cur.rss_bytes = 3, 1, 5, 123456
    a = m.rotate(10.0)
    m.count("pongs", 3)
    m.close("churn", "tester", 1000)
    m.record("rtt", 0.002)
    b = m.rotate(20.0)
    return m, a, b


def dumps(d: object) -> str:
    return json.dumps(d, separators=(",", ":"))


def test_the_file_form_is_the_record_written_before() -> None:
    m, a, b = two_intervals()
    lines = FILE_FORM.read_text().splitlines()
    assert dumps(interval_record(a, {"gave_up": 0, "events_dropped": 0})) == lines[0]
    assert dumps(b.record({"gave_up": 1})) == lines[1]
    assert dumps(totals(m)) == lines[2]
    assert dumps(latencies(m)) == lines[3]


def test_the_reader_gives_back_the_totals() -> None:
    m, a, b = two_intervals()
    records = [a.record({}), b.record({})]
    assert read_totals(records) == totals(m) == m.total.totals()
    # tolerant: what is not a number (or not an object) is skipped
    broken = [{**records[0], "pongs": "many", "closes": [1]}, records[1], {}]
    tot = read_totals(broken)
    assert tot["pongs"] == 3
    assert tot["closes"] == {"churn": 1}
    # a counter no record holds: 0, or left out
    assert read_totals([])["pongs"] == 0
    assert "pongs" not in read_totals([], missing=None)
    assert read_totals([], missing=None)["heartbeat_success"] is None


def filled() -> Tally:
    t = Tally()
    t.counts["pongs"] = 4
    t.closes["churn"] = 2
    t.closes_by_code["1000"] = 2
    t.handshake_failures["refused"] = 1
    t.dropped_samples["rtt"] = 1
    for us in (100, 2000, 30_000):
        t.hist["rtt"].record_value(us)
    t.hist["connect"].record_value(5000)
    t.gc_pause_max, t.gc_pause_total = 0.003, 0.004
    return t


def test_add_and_absorb_are_the_same_sum() -> None:
    b = filled()
    b.counts["missed"] = 3
    b.closes["storm_drop"] = 5
    b.gc_pause_max = 0.001
    before = b.record_fields()
    added, absorbed = filled(), filled()
    added.add(b)
    absorbed.absorb(json.loads(json.dumps(b.to_wire())))  # through JSON, as on the pipe
    assert added.record_fields() == absorbed.record_fields()
    assert added.totals() == absorbed.totals()
    assert added.counts["pongs"] == 8
    assert added.counts["missed"] == 3
    assert added.closes == {"churn": 4, "storm_drop": 5}
    assert added.hist["rtt"].get_total_count() == 6
    assert added.gc_pause_max == 0.003
    assert round(added.gc_pause_total, 9) == 0.008
    assert b.record_fields() == before  # the one added is left alone


def test_the_wire_form_round_trips() -> None:
    t = filled()
    wire = json.loads(json.dumps(t.to_wire()))
    assert wire["counts"] == {"pongs": 4}  # only what is not zero
    assert set(wire["hist"]) == {"rtt", "connect"}
    back = Tally.from_wire(wire)
    assert back.record_fields() == t.record_fields()
    assert back.totals() == t.totals()
    for name in HISTOGRAMS:
        assert back.hist[name].encode() == t.hist[name].encode()
    assert back.to_wire() == wire


def test_every_family_is_in_every_form() -> None:
    t = filled()
    wire, record, tot = t.to_wire(), t.record_fields(), t.totals()
    assert FAMILIES == (
        "closes",
        "closes_by_code",
        "closes_by_category",
        "handshake_failures",
        "dropped_samples",
    )
    for name in FAMILIES:
        assert name in wire
        assert name in record
        assert name in tot
