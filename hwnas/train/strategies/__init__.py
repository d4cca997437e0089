"""One module per training mode; see `hwnas.train.strategy` for the interface a mode implements."""
