from bidder.cli import main

raise SystemExit(main())
