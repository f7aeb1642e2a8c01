"""One module per group of verbs; each exposes `add(subparsers)`, which
registers its verbs with a `run(args) -> int` handler."""
