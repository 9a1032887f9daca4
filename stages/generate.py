"""generate@<dataset>: synthesise the raw data (and its judge-only truth)."""

from reprolab.pipelines import DATASETS, step_main
from reprolab.stage import entry

if __name__ == "__main__":
    entry("generate", step_main("generate"), DATASETS)
