"""split_augment@<dataset>: split first, then augment the training part only."""

from reprolab.pipelines import DATASETS, step_main
from reprolab.stage import entry

if __name__ == "__main__":
    entry("split_augment", step_main("split_augment"), DATASETS)
