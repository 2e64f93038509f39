"""The engine's version (torch-free: the CLI prints it before loading anything)."""

VERSION = "0.1.0"
