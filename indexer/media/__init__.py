"""Images in: safe decoding (``images``), SSRF-guarded URL fetching (``fetch``), which addresses a fetch may reach."""
