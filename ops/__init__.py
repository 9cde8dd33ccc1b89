"""Operations tooling: the local stack scripts and the demo (`python -m ops.demo`)."""
