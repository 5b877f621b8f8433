"""Model backends the trainer talks to through backends.base.Backend."""
