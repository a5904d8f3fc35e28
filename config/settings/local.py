"""Development: the embedded defaults (SQLite, local-memory cache) with DEBUG on unless the env says no."""

from config.env import env

from .base import *  # noqa: F403

DEBUG = env.bool("DEBUG", default=True)
