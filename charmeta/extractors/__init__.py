"""Attribute extractor backends. Each implements ``AttributeExtractor``; see ``base``."""
