"""The impairment proxy: a TCP proxy that delays, throttles, silently drops
or resets connections on purpose, so a run can reproduce a bad network
without root (``tc netem`` needs it). :mod:`soak.proxy.impair` decides,
:mod:`soak.proxy.server` moves the bytes."""

from soak.proxy.config import Bandwidth, ImpairmentConfig, Latency, Scope, TimedDrop
from soak.proxy.frames import DropHeartbeat
from soak.proxy.impair import Link
from soak.proxy.server import Proxy

__all__ = [
    "Bandwidth",
    "DropHeartbeat",
    "ImpairmentConfig",
    "Latency",
    "Link",
    "Proxy",
    "Scope",
    "TimedDrop",
]
