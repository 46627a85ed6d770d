"""nbgrader configuration when Jupyter runs from the repository root (`make lab`): the course
root is assignments/, configured in assignments/nbgrader_config.py."""

import os

load_subconfig(os.path.join(os.path.dirname(os.path.abspath(__file__)), "assignments", "nbgrader_config.py"))  # noqa: F821
