"""SMS triggers (the triggerer imports them by class path): delivery progress, and inbound replies for AssetWatcher."""
