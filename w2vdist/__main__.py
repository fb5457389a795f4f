import sys

from w2vdist.cli import main

sys.exit(main())
