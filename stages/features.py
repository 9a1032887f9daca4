"""features@<dataset>: causal features, windows, train-only scaler, registry."""

from reprolab.core.stage import entry

if __name__ == "__main__":
    entry("features")
