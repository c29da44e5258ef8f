"""Rule sets: schema, loader with precise errors, evaluator. Pure: no torch, av, SQL."""
