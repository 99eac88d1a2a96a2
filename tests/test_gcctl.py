from __future__ import annotations

import gc

from soak.gcctl import GC_THRESHOLD0, GcControl, GrowthFreezer


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


class CountingControl(GcControl):
    def __init__(self) -> None:
        super().__init__(lambda _: None)
        self.freezes = 0

    def checkpoint(self) -> None:
        self.freezes += 1


def test_growth_freezer_freezes_every_step_of_growth() -> None:
    control = CountingControl()
    freezer = GrowthFreezer(control, step=1000)
    for n in (0, 500, 999):
        freezer.observe(n)
    assert control.freezes == 0
    freezer.observe(1000)
    assert control.freezes == 1
    freezer.observe(1999)
    assert control.freezes == 1
    freezer.observe(2500)
    assert control.freezes == 2
    freezer.observe(100)  # most clients left: growth counts from here
    freezer.observe(1099)
    assert control.freezes == 2
    freezer.observe(1100)
    assert control.freezes == 3
