"""tdlcourse: the library behind the Theoretical Deep Learning course.

One module per idea (see shared design): ``device``, ``data``, ``models``, ``train``, ``capacity``,
``plots``, ``widgets`` and the analytic modules. Import the module you need:
``from tdlcourse import capacity; capacity.vc_gap(100, 1797, 0.05)``.
"""

__version__ = "0.1.0"
