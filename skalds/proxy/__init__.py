"""The Skalds 0.3.x service handles — ``KafkaProxy``, ``RedisProxy``, ``MongoProxy`` — kept
for user code written against them.

Skalds itself goes through the backend drivers in :mod:`skalds.backends`; each proxy here is a thin
facade over the matching driver (same connection settings, fork safety and data), imported only when
its module is used, so a proxy's client library is needed only by programs that use that proxy.
"""
