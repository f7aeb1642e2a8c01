import sys

from minihpc.cli import main

sys.exit(main())
