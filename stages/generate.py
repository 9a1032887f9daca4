"""generate@<dataset>: synthesise the raw data (and its judge-only truth)."""

from reprolab.core.stage import entry

if __name__ == "__main__":
    entry("generate")
