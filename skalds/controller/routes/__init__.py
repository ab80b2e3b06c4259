"""The API's routers, one module per resource (tasks, skalds, system)."""
