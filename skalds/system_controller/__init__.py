"""The seed's import path for the System Controller; the code lives in :mod:`skalds.controller`."""
