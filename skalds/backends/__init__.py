"""Backends behind three small contracts: task store, event bus, state cache.

Each sub-package has a ``base.py`` with the contract and one module per driver. Drivers are
imported lazily by :mod:`skalds.backends.factory`; the embedded SQLite driver needs nothing
beyond the standard library.
"""
