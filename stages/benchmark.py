"""benchmark: speed and memory of the trained pipeline, each beside its same-run reference."""

from reprolab.core.stage import entry

if __name__ == "__main__":
    entry("benchmark")
