"""``python -m scintiseg_phantoms.independent``: print the kind table as Markdown (for the docs)."""

import sys

from .kinds import markdown_table

sys.stdout.write(markdown_table() + "\n")
