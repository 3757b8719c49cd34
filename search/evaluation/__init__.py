"""Offline evaluation: judged queries (``judgments``), pure ranking metrics, and the evaluation run over several systems."""
