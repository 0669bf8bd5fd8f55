import sys

from morph3d.cli import main

sys.exit(main())
