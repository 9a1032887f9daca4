"""walk_forward: the Mamba and the best comparator over expanding-window folds."""

from reprolab.core.stage import entry

if __name__ == "__main__":
    entry("walk_forward")
