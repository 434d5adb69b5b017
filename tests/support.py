"""Shared test settings (importable as ``support``: pytest puts tests/ on sys.path, see pyproject.toml)."""

# Small images keep the suite fast; every code path is the same as at 512x512.
TEST_IMAGE_SIZE = 128
