"""`python -m bidder.training --out DIR [--requests N] [--seed S] [--tarball]`."""

from bidder.training.train import main

raise SystemExit(main())
