"""Non-VLA policies for Table I (blind, perception oracle, CNN behaviour cloning)."""
