import sys

from rscovlm.cli import main

sys.exit(main())
