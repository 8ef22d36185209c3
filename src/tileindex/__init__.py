"""tileindex: exact, fast, deterministic country membership for global lon/lat grids."""

from tileindex.errors import TileIndexError
from tileindex.grid import Grid, Window

__all__ = ["Grid", "TileIndexError", "Window"]
