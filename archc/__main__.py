"""`python -m archc` runs the command."""
import sys

from archc.cli import main

sys.exit(main())
