"""Sphinx fixes for Jupyter Book 1.x pages, so they load without console errors.

* Jupyter Book 1.0.4 with Sphinx 7.4 adds some scripts twice per page (sphinx-thebe's configuration and
  MathJax): the second copy throws "Identifier 'THEBE_JS_URL' has already been declared" and MathJax's
  "Cannot set property Package". We drop exact duplicates from the page's script list.
* pydata-sphinx-theme logs "Got invalid theme mode" when no default mode is set; we set "light".
* The book's own style sheet, ``static/refseg.css`` beside this file: code wraps at the column edge,
  wide tables scroll inside the column, long printed outputs scroll in a short box.
"""

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    # Same file (or same inline body) = same script. Keep the *last* copy: for MathJax that is the
    # deferred one, which runs after the inline ``window.MathJax`` configuration that precedes it.
    keys = [(js.filename or "", js.attributes.get("body", "")) for js in scripts]
    last = {k: i for i, k in enumerate(keys)}
    scripts[:] = [js for i, (js, k) in enumerate(zip(scripts, keys)) if last[k] == i]


def _default_mode(app, pagename, templatename, context, doctree):
    if not context.get("default_mode"):
        context["default_mode"] = "light"


def _add_static_path(app):
    # Absolute, so Sphinx copies it whatever the build's source folder is (tools/build_book.py stages
    # the book into _build/src).
    if str(STATIC) not in app.config.html_static_path:
        app.config.html_static_path.append(str(STATIC))


def setup(app):
    app.connect("builder-inited", _add_static_path)
    app.add_css_file("refseg.css")
    app.connect("html-page-context", _default_mode)
    app.connect("html-page-context", _dedupe_scripts, priority=1000)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
