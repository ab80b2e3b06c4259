"""The Skalds 0.3.x import path for the System Controller; the code lives in :mod:`skalds.controller`."""
