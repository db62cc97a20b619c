import sys

from rag.eval.bench.run import main

sys.exit(main())
