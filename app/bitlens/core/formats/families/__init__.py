"""The built-in format families, one module each (registered in ``formats/registry.py``)."""
