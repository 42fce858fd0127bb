from interkube.cli import main

raise SystemExit(main())
