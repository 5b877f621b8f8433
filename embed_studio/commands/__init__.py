"""One module per command group; each defines register(subparsers) and sets args.func."""
