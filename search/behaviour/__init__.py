"""Learning from the shop: the search and event log, judgments and click models from it, replay evaluation."""
