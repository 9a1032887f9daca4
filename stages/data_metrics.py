"""data_metrics@<dataset>: row counts, class balance and ceilings per split."""

from reprolab.core.stage import entry

if __name__ == "__main__":
    entry("data_metrics")
