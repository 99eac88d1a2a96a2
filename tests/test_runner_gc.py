from __future__ import annotations

import gc

from soak.runner import GC_THRESHOLD0, GcControl


def test_gc_control_times_pauses_and_restores_everything() -> None:
    before = gc.get_threshold()
    pauses: list[float] = []
    with GcControl(pauses.append) as ctl:
        assert gc.get_threshold()[0] == GC_THRESHOLD0
        assert gc.get_freeze_count() > 0
        gc.collect()
        assert len(pauses) == 1
        assert pauses[0] > 0
        ctl.checkpoint()
        ctl.quiet()
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert len(pauses) == 1  # the callback is gone
