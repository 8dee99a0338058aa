"""Pure model code: torch and numpy only. Nothing here imports ``engine`` or ``training``."""
