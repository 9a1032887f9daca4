"""reprolab: a declarative, reproducible ML pipeline built on DVC."""
