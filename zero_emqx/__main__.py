import sys

from zero_emqx.cli import main

sys.exit(main())
