import sys

from embed_studio.cli import main

sys.exit(main())
