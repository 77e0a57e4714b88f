"""``python -m oncohabitat_training``."""

import sys

from oncohabitat_training.cli import main

sys.exit(main())
