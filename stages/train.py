"""train@<model>: train a model and its comparators under the guard; log with dvclive."""

from reprolab.core.stage import entry

if __name__ == "__main__":
    entry("train")
