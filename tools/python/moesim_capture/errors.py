"""The one exception the package raises for bad input."""


class CaptureError(ValueError):
    """A capture the schema cannot hold: one line, `FILE: DATASET: what` like moesim's reader."""
