"""train@<model>: train a model and its comparators under the guard; log with dvclive."""

from reprolab.pipelines import MODELS, step_main
from reprolab.stage import entry

if __name__ == "__main__":
    entry("train", step_main("train"), MODELS)
