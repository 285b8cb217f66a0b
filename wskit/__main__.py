from wskit.cli import main

raise SystemExit(main())
