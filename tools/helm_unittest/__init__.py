"""Run helm-unittest suites with the real ``helm template``, following the plugin's documented semantics.

Chart users run ``charts/*/tests`` with the helm-unittest plugin; where the
plugin cannot be installed, this package runs the same files and gives the
same verdicts: ``PYTHONPATH=tools python -m helm_unittest [options] CHART...``
(see ``cli``). What it follows and how:

* ``suite`` -- finding and checking suite files (multi-suite files, every key);
* ``values`` -- values files and ``set`` merged as the plugin merges them;
* ``render`` -- only the selected templates rendered, documents in template
  order, ``.txt`` kept raw, the plugin's release defaults;
* ``lookup`` -- ``kubernetesProvider`` objects answering ``lookup``;
* ``jsonpath`` -- assertion paths; ``yamlcore`` -- YAML 1.2 scalars and Go
  equality; ``assertions`` -- all 36 assertion types; ``snapshot`` -- snapshot
  files; ``runner`` -- one test; ``junit`` -- the JUnit report; ``cli`` -- the
  command line; ``examples`` -- agreement with the plugin's example charts.

Anything it does not implement fails the run with ``UnsupportedError``
naming it; nothing passes silently.
"""

from .errors import UnsupportedError
from .runner import PLUGIN_VERSION, TestResult, run_case, run_test
from .suite import Case, collect, load_suites, suite_files

__all__ = [
    "PLUGIN_VERSION",
    "Case",
    "TestResult",
    "UnsupportedError",
    "collect",
    "load_suites",
    "run_case",
    "run_test",
    "suite_files",
]
