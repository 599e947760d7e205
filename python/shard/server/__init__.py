"""Compatibility package for ``python -m shard.server.app`` (see ``shard.server.app``)."""
