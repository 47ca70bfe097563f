"""scenekit: declarative, cached, multi-shot video generation."""

__version__ = "0.1.0"
