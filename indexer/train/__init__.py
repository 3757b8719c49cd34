"""Training an open_clip model on a catalog: the recipe (``config``), its data, the loop, and the entry points (``run``)."""
