"""features@<dataset>: causal features, windows, train-only scaler, registry."""

from reprolab.pipelines import DATASETS, step_main
from reprolab.stage import entry

if __name__ == "__main__":
    entry("features", step_main("features"), DATASETS)
