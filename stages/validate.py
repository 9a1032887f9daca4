"""validate: judge every trained model against its goals (params.validate)."""

from reprolab.core.stage import entry

if __name__ == "__main__":
    entry("validate")
