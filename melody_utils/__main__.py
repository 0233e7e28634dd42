"""``python -m melody_utils run``: the main job (see melody_utils.pipeline)."""

import sys

from .pipeline import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
