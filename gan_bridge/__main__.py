import sys

from gan_bridge.cli import main

sys.exit(main())
