"""Serverless, OpenAI-compatible chat-completions gateway for self-hosted GPU endpoints."""

__version__ = "0.1.0"
