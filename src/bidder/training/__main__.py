from bidder.training.train import main

raise SystemExit(main())
