"""Built-in callbacks. Pass instances in ``fit(callbacks=[...])``."""

from luz.callbacks.base import Callback, callback
from luz.callbacks.defaults import Interrupt, Metrics, Profile, TrainValid
from luz.reporting.progress import Progress

__all__ = [
    "Callback",
    "Interrupt",
    "Metrics",
    "Profile",
    "Progress",
    "TrainValid",
    "callback",
]
