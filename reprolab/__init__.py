"""reprolab: a declarative, reproducible ML pipeline built on DVC."""

__version__ = "0.1.0"
