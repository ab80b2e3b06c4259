"""Pydantic models shared by every part: tasks, events and the status state machine."""
