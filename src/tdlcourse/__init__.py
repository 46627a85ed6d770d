"""tdlcourse: the library behind the Theoretical Deep Learning course.

One module per idea, named for it; nothing is imported here, so import the module you need:
``from tdlcourse import capacity; capacity.vc_gap(100, 1797, 0.05)``. Each module's docstring
states its conventions and the papers it follows.

Module -> chapter -> lab -> tests. All twelve chapters are built (chapter 1: page
``book/01_generalization_puzzle.md``, lab ``labs/01_generalization_puzzle.ipynb``, assignment
``assignments/source/hw01/``; chapters 2-12 likewise).

==================  =====================================================  ========================
module              chapter (lab)                                          tests (``tests/``)
==================  =====================================================  ========================
``capacity``        1 generalization puzzle (lab 01); 2 norms, margins     ``test_capacity.py``
``randomization``   1 generalization puzzle (lab 01)                       ``test_randomization.py``
``randomfeatures``  2 double descent (lab 02)                              ``test_randomfeatures.py``
``pacbayes``        2 PAC-Bayes bounds (lab 02)                            ``test_pacbayes.py``
``implicit``        3 implicit bias (lab 03)                               ``test_implicit.py``
``simplicity``      3 simplicity bias (lab 03)                             ``test_simplicity.py``
``approximation``   4 approximation and depth (lab 04)                     ``test_approximation.py``
``regions``         4 depth separation; 5 linear regions (lab 05)          ``test_regions.py``
``meanfield``       6 signal propagation at initialization (lab 06)        ``test_meanfield.py``
``randmat``         7 gradients, dynamical isometry (lab 07)               ``test_randmat.py``
``ntk``             8 infinite width: NNGP and NTK (lab 08)                ``test_ntk.py`` ...
``spectral``        9 spectral bias (lab 09)                               ``test_spectral.py``
``deeplinear``      10 Saxe dynamics, teacher-student nets (lab 10)        ``test_deeplinear.py``
``curvature``       10 Hessian spectra, trace, density (lab 10)            ``test_curvature.py``
``landscape``       10 surfaces, convexity, mode connectivity (lab 10)     ``test_landscape.py``
``parity``          11 parity, SQ bounds, k-patterns (lab 11)              ``test_parity.py``
``pruning``         11 lottery tickets: IMP with rewinding, edge-popup     ``test_pruning.py``
``infotheory``      12 information bottleneck, binned MI (lab 12)          ``test_infotheory.py``
``device``          every lab: device, seeds, the ci/cpu/gpu scales        ``test_device.py``
``data``            every lab: digits, MNIST, CIFAR-10; the tasks of 11, 12 ``test_data.py`` ...
``models``          every lab: MLP/CNN/ResMLP with explicit init (6, 7)    ``test_models.py``
``layers``          the one parser of an MLP, the activation table         ``test_layers.py``
``train``           every lab: ``fit``, ``fit_ensemble``, ``fit_sweep``    ``test_train.py``
``checkpoint``      model files (safe to load)                             ``test_train.py``
``validate``        argument checks for every public function              ``test_validate.py``
``plots``           offline plotly figures                                 ``test_plots_widgets.py``
``widgets``         ipywidgets explorers with a static form for the book   ``test_plots_widgets.py``
``grading``         the instructor's ``tdl`` command (not for labs)        ``test_grading.py`` ...
==================  =====================================================  ========================

Private helpers: ``_functional`` (conventions shared by ``curvature`` and ``landscape``),
``_mlpstack`` (the batched backward pass of ``fit_ensemble``), ``_ntkmlp`` (the empirical NTK of an
MLP layer by layer), ``_atomic`` (atomic file writes).
Every public function's bad-input message is tested in ``test_bad_input.py``; no module imports
another in a cycle (``test_imports.py``). ``CONTRIBUTING.md`` has the same map, what a finished
chapter is, and how to run one lab, test file or benchmark.
"""

__version__ = "0.1.0"
