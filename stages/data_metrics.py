"""data_metrics@<dataset>: row counts, class balance and ceilings per split."""

from reprolab.pipelines import DATASETS, step_main
from reprolab.stage import entry

if __name__ == "__main__":
    entry("data_metrics", step_main("data_metrics"), DATASETS)
