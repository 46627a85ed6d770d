#!/usr/bin/env bash
# Copy the JavaScript the book serves itself into _vendor/ (never into a folder named _static:
# Jupyter Book adds every .js there to every page). plotly.js comes from the plotly Python package;
# MathJax 3, the ipywidgets HTML manager and require.js from npm, installed from the committed lock.
set -euo pipefail
PY=${1:-.venv/bin/python}
OUT=${2:-_vendor}
command -v npm >/dev/null || { echo "npm is needed to fetch MathJax and the widget manager (apt-get install npm)"; exit 1; }
(cd js && npm ci --no-audit --no-fund --loglevel=error)
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp/mathjax"
plotly_js=$("$PY" -c 'import plotly, pathlib; print(pathlib.Path(plotly.__file__).parent / "package_data" / "plotly.min.js")')
cp "$plotly_js" "$OUT.tmp/plotly.min.js"
cp js/node_modules/requirejs/require.js "$OUT.tmp/require.js"
cp js/node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js "$OUT.tmp/embed-amd.js"
mj=js/node_modules/mathjax/es5
cp "$mj/tex-chtml.js" "$OUT.tmp/mathjax/"
# Fonts, input extensions and the menu's lazily loaded parts (sre is the speech engine: skipped).
cp -r "$mj/output" "$mj/input" "$mj/a11y" "$mj/ui" "$mj/adaptors" "$OUT.tmp/mathjax/"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "vendored JavaScript in $OUT/: $(du -sh "$OUT" | cut -f1)"
