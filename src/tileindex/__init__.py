"""tileindex: exact, fast, deterministic country membership for global lon/lat grids."""

from tileindex.errors import TileIndexError
from tileindex.grid import Grid, Window
from tileindex.pipeline import BuildResult, build

__all__ = ["BuildResult", "Grid", "TileIndexError", "Window", "build"]
