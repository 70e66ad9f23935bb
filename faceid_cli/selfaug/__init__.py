"""``faceid selfaug``: DreamIdentity's self-augmented editability dataset, built by the T2I model."""
