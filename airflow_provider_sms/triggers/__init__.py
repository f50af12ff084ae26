"""SMS triggers (imported by class path in the triggerer)."""
