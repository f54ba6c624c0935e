"""Face recognition (off by default, per camera): see docs/faces.md.

Modules: :mod:`~trakr.faces.options` (the ``trakr.faces`` section), :mod:`~trakr.faces.models`
(detector/embedder interfaces), :mod:`~trakr.faces.scrfd` and :mod:`~trakr.faces.arcface` (the
ONNX models), :mod:`~trakr.faces.gallery` (enrolled people, SQLite), :mod:`~trakr.faces.stage`
(the deriver that names tracked people), :mod:`~trakr.faces.crops` (face crops as alert
evidence) and :mod:`~trakr.faces.cli` (``trakr faces``). Importing this package loads nothing.
"""
