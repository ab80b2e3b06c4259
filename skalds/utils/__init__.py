"""Small utilities shared by every part."""
