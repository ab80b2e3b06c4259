"""Task workers: the user's base classes, the registry, the fork server and the supervisor."""
