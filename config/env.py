"""The one place settings read the environment (and an optional `.env` file)."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_dotenv = BASE_DIR / ".env"
if _dotenv.is_file():
    environ.Env.read_env(str(_dotenv), overwrite=False)


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated env value as a list, blanks dropped."""
    return [item.strip() for item in env.str(name, default=default).split(",") if item.strip()]
