import sys

from letgo.cli import main

sys.exit(main())
