from scan.cli import main

raise SystemExit(main())
