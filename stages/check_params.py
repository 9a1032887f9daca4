"""check_params: validate the whole params.yaml before any other stage runs.

Every other stage in dvc.yaml depends on this stage's marker file, so DVC runs it first and
a bad params.yaml fails here, before DVC deletes any other stage's outputs.
"""

import sys

from reprolab.core.config import CHECK_MARKER, check_params

if __name__ == "__main__":
    sys.exit(check_params(marker=CHECK_MARKER))
