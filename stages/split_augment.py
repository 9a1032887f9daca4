"""split_augment@<dataset>: split first, then augment the training part only."""

from reprolab.core.stage import entry

if __name__ == "__main__":
    entry("split_augment")
