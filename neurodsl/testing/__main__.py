"""``python -m neurodsl.testing``: the spec-fuzzing campaign (see :mod:`neurodsl.testing.fuzzing`)."""
import sys

from .fuzzing import main

sys.exit(main())
