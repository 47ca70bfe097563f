"""The content-addressed cache of node outputs."""

from scenekit.cache.store import CacheStore, EntryInfo, StagedEntry

__all__ = ["CacheStore", "EntryInfo", "StagedEntry"]
