"""The offline demo: a procedural catalog (vocabulary, drawing), its quality check and contact sheets."""
