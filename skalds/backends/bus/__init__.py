"""Event buses: commands between controller and skalds (assign, cancel, update)."""
