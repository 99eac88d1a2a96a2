"""The Runner of a profile's run, where it always was: it lives in
soak.run.runner now (soak.run describes the layout)."""

from soak.run.runner import RAMP_STEP, Outcome, Runner

__all__ = ["RAMP_STEP", "Outcome", "Runner"]
